//! `warren clickhouse …`: chores of the ClickHouse cluster named by
//! `[clickhouse] url` — or of the layout a reshard moved it to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use warren_core::config::WarrenConfig;
use warren_core::jobs::JobBoard;
use warren_meta::MetaStore;
use warren_ops::clickhouse::rebuild::{load_persons, rebuild_days, PersonsLoad};
use warren_ops::clickhouse::reshard::{describe, drop_source, Reshard, ReshardProgress, BATCH_ROWS};
use warren_ops::clickhouse::verify::{self, MARGIN};
use warren_store::{
    ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl, Cut, DayDigest, DeltaStore, EventStore,
    ReplicaStep, ReshardJournal,
};

use crate::config;

#[derive(Debug, Subcommand)]
pub enum ClickHouseCommand {
    /// Create the cluster's tables and load the Delta table into them, one
    /// day at a time, each verified (rows and checksum), then the persons;
    /// run it again to finish a run that was stopped. Ends by moving the
    /// cluster's offsets to what the table held when it began, so ingest
    /// catches the cluster up from there (also past log records that
    /// retention deleted before the cluster got them).
    #[command(alias = "backfill")]
    Rebuild(StoreArgs),
    /// Compare the cluster with the Delta table: each day's rows and
    /// checksum, and every row on the shard its key names. Exits 1 when
    /// they differ.
    Verify(StoreArgs),
    /// Move the cluster's events and persons to a new layout (more or fewer
    /// shards, other servers) while ingest and queries go on: each day
    /// copied and verified, then every process switched to the new layout
    /// at once. Run it again to finish a run that was stopped.
    Reshard(ReshardArgs),
    /// Chores of one server of the cluster.
    #[command(subcommand)]
    Replica(ReplicaCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Bring a new or emptied server back to its shard's data: give it the
    /// schema's tables, wait until it fetched what the other replicas
    /// hold, and compare it with one of them. Safe to run again.
    Replace(ReplaceArgs),
}

#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// The server: `host:port` of its HTTP interface (or a full
    /// `http[s]://` URL), with its `shard` and `replica` macros set.
    #[arg(long)]
    host: String,
    #[command(flatten)]
    stores: StoreArgs,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The data dir whose stores to read (the configuration's when unset).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReshardArgs {
    /// The new layout: `clickhouse://host:port,…/database?cluster=name`,
    /// with a database other than the current one's.
    #[arg(long, required_unless_present_any = ["status", "drop_source"])]
    to: Option<String>,
    /// Show where the recorded reshard stands, and change nothing.
    #[arg(long, conflicts_with_all = ["to", "drop_source"])]
    status: bool,
    /// After the switch: drop the tables of the layout that was left (the
    /// one `[clickhouse] url` names), on every one of its servers.
    #[arg(long, conflicts_with = "to")]
    drop_source: bool,
    /// Rows one `INSERT … SELECT` copies at most, in whole days (one day
    /// at least): smaller batches leave a killed run less to copy again,
    /// larger ones fewer statements.
    #[arg(long, default_value_t = BATCH_ROWS, value_parser = clap::value_parser!(u64).range(1..))]
    batch_rows: u64,
    #[command(flatten)]
    stores: StoreArgs,
}

/// The stores a chore of the cluster works on.
struct Stores {
    meta: Arc<dyn MetaStore>,
    delta: Arc<DeltaStore>,
    /// The layout in use (the configured one, or where a reshard moved it).
    clickhouse: Arc<ClickHouseStore>,
    /// `database on cluster name`, for messages.
    cluster: String,
    partitions: u32,
}

fn load_config(
    config_path: Option<PathBuf>,
    args: StoreArgs,
) -> anyhow::Result<(WarrenConfig, ClickHouseStoreOptions)> {
    let mut config = config::load(config_path.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let options = ClickHouseStoreOptions::from_config(&config.clickhouse)?
        .context("no cluster: set [clickhouse] url (or WARREN_CLICKHOUSE__URL)")?;
    Ok((config, options))
}

async fn open(config_path: Option<PathBuf>, args: StoreArgs) -> anyhow::Result<Stores> {
    let (config, options) = load_config(config_path, args)?;
    let meta = warren_node::adapters::open_meta(&config).await?;
    let delta = warren_node::adapters::open_event_store(&config, &JobBoard::default()).await?;
    // After a reshard, the layout in use rather than the one it left.
    let options = options.in_use(meta.as_ref()).await?;
    let cluster = format!("{} on cluster {}", options.url.database, options.url.cluster);
    let clickhouse = Arc::new(
        ClickHouseStore::open(options, meta.clone()).await.with_context(|| format!("opening {cluster}"))?,
    );
    Ok(Stores { meta, delta, clickhouse, cluster, partitions: config.event_log.partitions })
}

pub async fn run(config_path: Option<PathBuf>, command: ClickHouseCommand) -> anyhow::Result<()> {
    match command {
        ClickHouseCommand::Rebuild(args) => rebuild(open(config_path, args).await?).await,
        ClickHouseCommand::Verify(args) => verify(open(config_path, args).await?).await,
        ClickHouseCommand::Reshard(args) => reshard(config_path, args).await,
        ClickHouseCommand::Replica(ReplicaCommand::Replace(args)) => {
            replace_replica(open(config_path, args.stores).await?, &args.host).await
        }
    }
}

async fn replace_replica(stores: Stores, host: &str) -> anyhow::Result<()> {
    let Stores { clickhouse, cluster, .. } = stores;
    let host = if host.contains("://") {
        host.trim_end_matches('/').to_string()
    } else {
        // The scheme the cluster's URL uses for every server.
        let scheme =
            clickhouse.url().hosts.first().and_then(|h| h.split_once("://")).map_or("http", |(s, _)| s);
        format!("{scheme}://{host}")
    };
    println!("bringing {host} to its shard's data in {cluster}");
    let started = Instant::now();
    let replaced = clickhouse
        .replace_replica(&host, |step| match step {
            ReplicaStep::Attached(table) => println!("attached to the replica ZooKeeper knew: {table}"),
            ReplicaStep::Synced(table) => println!("synced {table}"),
            ReplicaStep::Apart { event_rows, peer_event_rows } => println!(
                "{event_rows} event rows here, {peer_event_rows} on the peer (inserts going on?): syncing again"
            ),
        })
        .await
        .context("the replacement stopped; run it again")?;
    println!(
        "verified in {:.1} s: shard {} replica {} holds the {} event rows of its peer {} (same checksum) and \
         {} person rows, as the peer does",
        started.elapsed().as_secs_f64(),
        replaced.shard,
        replaced.replica,
        replaced.event_rows,
        replaced.peer,
        replaced.person_rows
    );
    Ok(())
}

async fn reshard(config_path: Option<PathBuf>, args: ReshardArgs) -> anyhow::Result<()> {
    let (config, options) = load_config(config_path, args.stores)?;
    let meta = warren_node::adapters::open_meta(&config).await?;
    if args.status {
        match ReshardJournal::read(meta.as_ref()).await? {
            Some(journal) => print_journal(&journal),
            None => println!("no reshard is recorded"),
        }
        return Ok(());
    }
    if args.drop_source {
        let journal = ReshardJournal::read(meta.as_ref()).await?.context("no reshard is recorded")?;
        println!("dropping the tables of {}", describe(&journal.source));
        let undone = drop_source(meta.clone(), &options).await?;
        println!("dropped: {undone} schema operations rolled back; the old layout holds no Warren tables");
        return Ok(());
    }
    let target_url = args.to.context("--to names the new layout")?;
    let target_options =
        ClickHouseStoreOptions { url: ClickHouseUrl::parse(&target_url)?, ..options.clone() };
    let delta = warren_node::adapters::open_event_store(&config, &JobBoard::default()).await?;
    // The layout in use is migrated by the processes using it; connecting
    // must not make the tables of one a reshard dropped.
    let source = ClickHouseStore::connect(options, meta.clone())?;
    println!("making the tables of {}", describe(&target_url));
    let target =
        ClickHouseStore::open(target_options, meta.clone()).await.context("opening the new layout")?;
    let reshard = Reshard {
        delta: &delta,
        meta: meta.as_ref(),
        source: &source,
        target: &target,
        partitions: config.event_log.partitions,
        batch_rows: args.batch_rows,
    };
    println!("resharding {} to {}", describe(&source.url().without_credentials()), describe(&target_url));
    let journal = reshard
        .run(|step| match step {
            ReshardProgress::Copying { days, done } => {
                println!("copying {days} days ({done} done before); ingest writes both layouts meanwhile")
            }
            ReshardProgress::Day { index, total, day, copied, rows_per_second, eta } => println!(
                "{index}/{total} {day}: {} rows from the {}, verified (checksum {:016x}) in {:.1} s; \
                 {rows_per_second:.0} rows/s, about {} s to go",
                copied.rows,
                if copied.from == "delta" { "Delta table" } else { "old layout" },
                copied.checksum,
                copied.millis as f64 / 1000.0,
                eta.as_secs()
            ),
            ReshardProgress::Persons { projects, persons } => {
                println!("persons loaded: {persons} of {projects} projects")
            }
            ReshardProgress::CatchingUp { records_behind } => {
                println!("waiting for ingest: the new layout is {records_behind} records behind")
            }
            ReshardProgress::Verified { days } => {
                println!("verified: {days} days equal to the Delta table, every row on its shard")
            }
            ReshardProgress::Switched => println!("switched: every process uses the new layout from now"),
        })
        .await
        .context("the reshard stopped; run it again to go on")?;
    print_journal(&journal);
    println!(
        "next: set [clickhouse] url to the new layout in every process's configuration, then drop the old \
         tables with `warren clickhouse reshard --drop-source` (docs/runbooks/clickhouse.md)"
    );
    Ok(())
}

fn print_journal(journal: &ReshardJournal) {
    println!("reshard from {} to {}", describe(&journal.source), describe(&journal.target));
    println!("phase: {}", serde_json::to_value(journal.phase).unwrap_or_default().as_str().unwrap_or("?"));
    let rows: u64 = journal.days.values().map(|day| day.rows).sum();
    let from_delta = journal.days.values().filter(|day| day.from == "delta").count();
    println!(
        "days copied and verified: {} ({rows} rows; {from_delta} loaded from the Delta table)",
        journal.days.len()
    );
    println!("persons loaded: {}", if journal.persons_loaded { "yes" } else { "not yet" });
}

async fn verify(stores: Stores) -> anyhow::Result<()> {
    let Stores { delta, clickhouse, cluster, .. } = stores;
    println!("comparing {cluster} with the Delta table");
    // Rows received in the last moments may be between their writes of
    // the two stores.
    let cut = Cut::settled_for(MARGIN);
    let found = verify::verify(&delta, &clickhouse, cut).await?;
    let shown = |digest: Option<DayDigest>| {
        digest.map_or("none".to_string(), |d| format!("{} rows, checksum {:016x}", d.rows, d.checksum))
    };
    for day in &found.days {
        if day.agrees() {
            println!("{}: {}", day.day, shown(day.delta));
        } else {
            println!("{}: DIFFERS: Delta {}, cluster {}", day.day, shown(day.delta), shown(day.cluster));
        }
    }
    for shard in &found.misplaced {
        if shard.rows > 0 {
            println!("shard {} ({}): {} rows belong on another shard", shard.shard, shard.host, shard.rows);
        }
    }
    let differing = found.days.iter().filter(|day| !day.agrees()).count();
    let misplaced: u64 = found.misplaced.iter().map(|shard| shard.rows).sum();
    if found.holds() {
        println!("verified: {} days equal, every row on its shard", found.days.len());
        Ok(())
    } else {
        anyhow::bail!(
            "{differing} of {} days differ and {misplaced} rows sit on the wrong shard; \
             `warren clickhouse rebuild` loads what is missing (docs/runbooks/clickhouse.md)",
            found.days.len()
        )
    }
}

async fn rebuild(stores: Stores) -> anyhow::Result<()> {
    let Stores { meta, delta, clickhouse, cluster, partitions } = stores;
    // What the table holds before it is read: once it is loaded, the
    // cluster holds at least this much, and ingest catches it up from here.
    let table_offsets = delta.offsets(warren_ingest::CONSUMER, partitions).await?;
    // Ingest writes persons to a cluster only while it holds what the table
    // holds; one behind gets the meta store's persons replacing its own.
    let held = clickhouse.offsets(warren_ingest::CONSUMER, partitions).await?;
    let behind =
        table_offsets.iter().any(|(partition, offset)| held.get(partition).is_none_or(|h| h < offset));
    let load = if behind { PersonsLoad::Replace } else { PersonsLoad::BelowIngest };
    println!("loading the Delta table into {cluster}");
    let started = Instant::now();
    // Every row the table held when its offsets were read was received
    // before now.
    let cut = Cut::settled_for(std::time::Duration::ZERO);
    let days = rebuild_days(&delta, &clickhouse, cut, |day, index, total| {
        let what = if day.loaded {
            format!("loaded (read {:.1} s, insert {:.1} s)", day.read.as_secs_f64(), day.insert.as_secs_f64())
        } else {
            "already there".to_string()
        };
        let digest = day.digest;
        println!(
            "{index}/{total} {}: {} rows {what}, verified (checksum {:016x})",
            digest.day, digest.rows, digest.checksum
        );
    })
    .await
    .context("the rebuild stopped; run it again to go on")?;
    let loaded: Vec<_> = days.iter().filter(|d| d.loaded).collect();
    println!(
        "events done: {} days, {} loaded ({} rows) in {:.1} s",
        days.len(),
        loaded.len(),
        loaded.iter().map(|d| d.digest.rows).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut reported = Instant::now();
    let projects = load_persons(&delta, meta.as_ref(), &clickhouse, load, |team, persons| {
        if reported.elapsed().as_secs() >= 5 {
            println!("project {team}: {persons} persons so far");
            reported = Instant::now();
        }
    })
    .await
    .context("loading persons stopped; run it again to go on")?;
    for (team, persons) in &projects {
        println!("project {team}: {persons} persons loaded");
    }
    println!(
        "persons done: {} projects, {} persons in {:.1} s",
        projects.len(),
        projects.iter().map(|(_, n)| n).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    let held = clickhouse.offsets(warren_ingest::CONSUMER, partitions).await?;
    let moved: Vec<(u32, u64)> = table_offsets
        .into_iter()
        .filter(|(partition, offset)| held.get(partition).is_none_or(|held| held < offset))
        .collect();
    if !moved.is_empty() {
        clickhouse.append(warren_ingest::CONSUMER, Vec::new(), &moved).await?;
        println!(
            "the cluster's offsets now say it holds what the table held when the load began: \
             ingest catches it up from there"
        );
    }
    Ok(())
}
