//! `warren bench ingest`: end-to-end ingest throughput (event log →
//! persons → Delta) and freshness (capture acknowledgement → visible in a
//! DataFusion query), on a realistic stream: 100,000 distinct ids, about 5%
//! `$identify`, about 30 properties per event.
//!
//! Throughput: a capture-only Warren fills the log, then an ingest-only
//! Warren drains it on the SQLite meta store; with `--postgres-url` it
//! drains a copy of the log again on that PostgreSQL meta store, and with
//! `--clickhouse-url` another copy writing the cluster beside Delta, for
//! the cluster's insert rate. The reference, measured in the same run on
//! the same log, is the floor of any ingest: reading the log back and
//! decoding each record's JSON, with no persons and no writes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use serde_json::{json, Value};
use warren_core::config::EventStoreConfig;
use warren_log::{EventLog, SegmentLog, SegmentLogOptions};
use warren_store::{DeltaStore, DeltaStoreOptions};

use super::{event_of, peak_rss_mib, start_server};

#[derive(Debug, clap::Args)]
pub struct IngestBench {
    /// Events to ingest in the throughput run.
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Distinct users in the stream.
    #[arg(long, default_value_t = 100_000)]
    distinct_ids: u32,
    /// Events per second sent during the freshness run.
    #[arg(long, default_value_t = 10_000)]
    rate: usize,
    /// Measured seconds of the freshness run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Keep the data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// A ClickHouse cluster (as `[clickhouse] url`): the same log is
    /// drained a second time with the cluster written beside Delta, and
    /// that rate reported too. `cargo run -p warren-testkit --bin
    /// clickhouse-cluster` starts one.
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// An empty PostgreSQL database (as `meta_url`): the same log is
    /// drained once more with the meta store there, and that rate
    /// reported too. `cargo run -p warren-testkit --bin postgres-server`
    /// starts a server and prints one.
    #[arg(long)]
    postgres_url: Option<String>,
}

/// What draining a log with an ingest-only server measured.
struct Drained {
    rate: f64,
    seconds: f64,
    rss_mib: Option<f64>,
    persons_s: f64,
    store_s: f64,
    meta_s: f64,
}

/// Drains the log in `dir` with an ingest-only server (with `env`).
async fn drain(
    client: &reqwest::Client,
    dir: &Path,
    events: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<Drained> {
    let started = Instant::now();
    let (ingest, url) = start_server(dir, TOKEN, &["--role", "ingest"], env).await?;
    let pid = ingest.id();
    loop {
        let rows = metric(client, &url, warren_core::metrics::STORE_ROWS_WRITTEN).await?;
        if rows as usize >= events {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("ingest did not finish within 30 minutes ({rows} rows)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss_mib = pid.and_then(peak_rss_mib);
    let stage = |stage: &str| {
        let (client, url) = (client.clone(), url.clone());
        let name = format!("{}_sum{{stage=\"{stage}\"}}", warren_core::metrics::INGEST_STAGE_SECONDS);
        async move { metric(&client, &url, &name).await.unwrap_or(0.0) }
    };
    let (persons_s, store_s, meta_s) = (stage("persons").await, stage("store").await, stage("meta").await);
    stop(ingest).await?;
    Ok(Drained { rate: events as f64 / seconds, seconds, rss_mib, persons_s, store_s, meta_s })
}

/// Copies a data dir (a stopped server's) file by file.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

const TOKEN: &str = "phc_bench_ingest";
const BATCH: usize = 500;

/// One request of the stream: 75% known users, 20% anonymous visitors, 5%
/// `$identify` joining a visitor to a user; one event in ten sets a
/// person property.
fn stream_batch(rng: &mut impl Rng, distinct_ids: u32, size: usize) -> Vec<Value> {
    (0..size)
        .map(|_| {
            let user = rng.random_range(0..distinct_ids);
            let roll: f64 = rng.random();
            let mut event = if roll < 0.05 {
                let mut event = event_of(rng, &format!("user-{user}"), user);
                event["event"] = json!("$identify");
                event["properties"]["$anon_distinct_id"] = json!(format!("anon-{user}"));
                event
            } else if roll < 0.25 {
                event_of(rng, &format!("anon-{user}"), user)
            } else {
                event_of(rng, &format!("user-{user}"), user)
            };
            if rng.random_bool(0.1) {
                let plan = ["free", "team", "enterprise"][rng.random_range(0..3)];
                event["properties"]["$set"] = json!({ "plan": plan });
            }
            event["uuid"] = json!(uuid::Uuid::now_v7());
            event
        })
        .collect()
}

async fn send(client: &reqwest::Client, url: &str, events: Vec<Value>) -> anyhow::Result<()> {
    let body = json!({"api_key": TOKEN, "batch": events});
    loop {
        let response = client.post(format!("{url}/batch/")).json(&body).send().await?;
        match response.status().as_u16() {
            200 => return Ok(()),
            503 => tokio::time::sleep(Duration::from_millis(20)).await,
            status => bail!("capture answered {status}"),
        }
    }
}

/// Reads a counter or gauge (summed over labels) from `/metrics`.
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = client.get(format!("{url}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn stop(mut child: tokio::process::Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("warren serve exited with {status}");
    }
    Ok(())
}

pub async fn run(options: IngestBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "ingest bench: {} events, {} distinct ids, ~5% $identify, ~30 properties per event",
        options.events, options.distinct_ids
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;

    // 1. Fill the log through capture.
    let throughput_dir = dir.path().join("throughput");
    std::fs::create_dir_all(&throughput_dir)?;
    let (capture, url) = start_server(&throughput_dir, TOKEN, &["--role", "capture"], &[]).await?;
    let mut rng = rand::rng();
    let bodies: Vec<Vec<Value>> = (0..options.events.div_ceil(BATCH))
        .map(|_| stream_batch(&mut rng, options.distinct_ids, BATCH))
        .collect();
    let queue = Arc::new(Mutex::new(bodies));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (queue, client, url) = (queue.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                loop {
                    let Some(batch) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return anyhow::Ok(());
                    };
                    send(&client, &url, batch).await?;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    stop(capture).await?;
    let events = options.events.div_ceil(BATCH) * BATCH;

    // The other drains start from the same log.
    let cluster_dir = dir.path().join("throughput-clickhouse");
    if options.clickhouse_url.is_some() {
        copy_dir(&throughput_dir, &cluster_dir)?;
    }
    let postgres_dir = dir.path().join("throughput-postgres");
    if options.postgres_url.is_some() {
        copy_dir(&throughput_dir, &postgres_dir)?;
    }

    // 2. Drain it with ingest alone.
    let delta = drain(&client, &throughput_dir, events, &[]).await?;
    println!(
        "warren     {:>10.0} events/s  ({events} events in {:.1} s, process start included; \
         stages: persons {:.1} s, Delta {:.1} s, meta {:.1} s)",
        delta.rate, delta.seconds, delta.persons_s, delta.store_s, delta.meta_s
    );
    match delta.rss_mib {
        Some(rss) => println!("peak RSS   {rss:.0} MiB (ingest server)"),
        None => println!("peak RSS   unknown"),
    }
    let ingest_rate = delta.rate;
    if let Some(url) = &options.postgres_url {
        let postgres = drain(&client, &postgres_dir, events, &[("WARREN_META_URL", url)]).await?;
        println!(
            "postgres   {:>10.0} events/s  (the same log, meta store on PostgreSQL; stages: persons {:.1} s, \
             Delta {:.1} s, meta {:.1} s)",
            postgres.rate, postgres.persons_s, postgres.store_s, postgres.meta_s
        );
    }
    if let Some(url) = &options.clickhouse_url {
        // Fresh uuids each run, and offsets in the copied meta store: the
        // cluster's database may hold earlier runs.
        let cluster = drain(&client, &cluster_dir, events, &[("WARREN_CLICKHOUSE__URL", url)]).await?;
        println!(
            "+cluster   {:>10.0} events/s  (the same log, written to Delta and the ClickHouse cluster: \
             Delta + cluster {:.1} s, of which the cluster's inserts are the difference from above)",
            cluster.rate, cluster.store_s
        );
        println!(
            "cluster    {:>10.0} rows/s inserted into ClickHouse ({events} rows in {:.1} s more store time than Delta alone)",
            events as f64 / (cluster.store_s - delta.store_s).max(0.001),
            (cluster.store_s - delta.store_s).max(0.0)
        );
    }

    // 3. The reference: read and decode the same log.
    let reference = decode_floor(&throughput_dir.join("log")).await?;
    println!("reference  {reference:>10.0} events/s  (log read + JSON decode only, same log, same run)");
    println!("ratio      warren / reference = {:.3}", ingest_rate / reference);

    // 4. Freshness at a steady rate with every role in one process.
    let fresh_dir = dir.path().join("freshness");
    std::fs::create_dir_all(&fresh_dir)?;
    let (server, url) = start_server(&fresh_dir, TOKEN, &[], &[]).await?;
    let pid = server.id();
    let (p50, p99, max, samples) = freshness(&client, &url, &fresh_dir, &options).await?;
    let rss = pid.and_then(peak_rss_mib);
    stop(server).await?;
    println!(
        "freshness  p50 {p50:.2} s  p99 {p99:.2} s  max {max:.2} s  ({samples} markers at {} events/s, \
         acknowledgement → visible in a DataFusion query polled every 100 ms)",
        options.rate
    );
    if let Some(rss) = rss {
        println!("peak RSS   {rss:.0} MiB (all roles, freshness run)");
    }
    if options.keep {
        println!("data kept in {}", dir.keep().display());
    }
    Ok(())
}

/// Events per second of reading the whole log and decoding every record
/// and its event JSON: what any consumer of this log must at least do.
async fn decode_floor(log_dir: &Path) -> anyhow::Result<f64> {
    let options = SegmentLogOptions::from_config(log_dir.to_path_buf(), &Default::default());
    let log = tokio::task::spawn_blocking(move || SegmentLog::open(options)).await??;
    let started = Instant::now();
    let mut decoded = 0usize;
    for partition in 0..log.partitions() {
        for record in warren_log::read_partition(&log, partition).await? {
            let event: warren_core::CapturedEvent = serde_json::from_slice(&record.value)?;
            let data: Value = serde_json::from_str(&event.data)?;
            std::hint::black_box(data);
            decoded += 1;
        }
    }
    let rate = decoded as f64 / started.elapsed().as_secs_f64();
    log.close().await?;
    Ok(rate)
}

/// Sends `rate` events/s; every 20th request carries a marker event whose
/// acknowledgement time is noted; a poller queries the table until each
/// marker is visible. Returns (p50, p99, max, markers) in seconds.
async fn freshness(
    client: &reqwest::Client,
    url: &str,
    data_dir: &Path,
    options: &IngestBench,
) -> anyhow::Result<(f64, f64, f64, usize)> {
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let requests_per_sec = (options.rate / 100).max(1);
    let interval = Duration::from_secs_f64(1.0 / requests_per_sec as f64);
    let sender = {
        let (client, url, acked) = (client.clone(), url.to_string(), acked.clone());
        let (distinct_ids, seconds) = (options.distinct_ids, options.seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut n = 0usize;
            let mut in_flight = Vec::new();
            while Instant::now() < deadline {
                tick.tick().await;
                let mut batch = stream_batch(&mut rand::rng(), distinct_ids, 100);
                let marker = n.is_multiple_of(20).then(|| {
                    batch[0]["event"] = json!("$bench_marker");
                    batch[0]["uuid"].as_str().unwrap_or_default().to_string()
                });
                n += 1;
                let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
                in_flight.push(tokio::spawn(async move {
                    send(&client, &url, batch).await?;
                    if let (Some(marker), Ok(mut acked)) = (marker, acked.lock()) {
                        acked.insert(marker, Instant::now());
                    }
                    anyhow::Ok(())
                }));
            }
            for request in in_flight {
                request.await??;
            }
            anyhow::Ok(())
        })
    };
    let table =
        DeltaStore::open(DeltaStoreOptions::from_config(&EventStoreConfig::default(), data_dir)?).await?;
    let mut delays = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let poll_deadline = Instant::now() + Duration::from_secs(options.seconds + 60);
    loop {
        let rows = table.read_rows(Some("event = '$bench_marker'")).await.context("polling the table")?;
        let now = Instant::now();
        let pending: Vec<(String, Instant)> = acked
            .lock()
            .map(|acked| acked.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let visible: std::collections::HashSet<String> =
            rows.iter().map(|row| row.uuid.to_string()).collect();
        for (uuid, at) in pending {
            if visible.contains(&uuid) && seen.insert(uuid) {
                delays.push(now.duration_since(at).as_secs_f64());
            }
        }
        let total = acked.lock().map(|acked| acked.len()).unwrap_or(0);
        if sender.is_finished() && seen.len() >= total {
            break;
        }
        if Instant::now() > poll_deadline {
            bail!("{} of {total} markers never became visible", total - seen.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sender.await??;
    delays.sort_by(f64::total_cmp);
    let at = |p: f64| {
        delays.get(((delays.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(0.0)
    };
    Ok((at(0.5), at(0.99), delays.last().copied().unwrap_or(0.0), delays.len()))
}
