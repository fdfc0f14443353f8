//! `warren clickhouse …`: chores of the ClickHouse cluster named by
//! `[clickhouse] url`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use warren_core::jobs::JobBoard;
use warren_ops::backfill::{backfill, backfill_persons, PersonsLoad};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, EventStore};

use crate::config;

#[derive(Debug, Subcommand)]
pub enum ClickHouseCommand {
    /// Load the Delta table into the cluster, one day at a time, then its
    /// persons; run it again to finish a run that was stopped. Ends by
    /// moving the cluster's offsets to what the table held when it began,
    /// so ingest catches the cluster up from there (also past log records
    /// that retention deleted before the cluster got them).
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The data dir whose stores to read (the configuration's when unset).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(config_path: Option<PathBuf>, command: ClickHouseCommand) -> anyhow::Result<()> {
    let ClickHouseCommand::Backfill(args) = command;
    let mut config = config::load(config_path.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let options = ClickHouseStoreOptions::from_config(&config.clickhouse)?
        .context("no cluster to load: set [clickhouse] url (or WARREN_CLICKHOUSE__URL)")?;
    let cluster = format!("{} on cluster {}", options.url.database, options.url.cluster);
    let meta = warren_node::adapters::open_meta(&config).await?;
    let delta = warren_node::adapters::open_event_store(&config, &JobBoard::default()).await?;
    let clickhouse =
        ClickHouseStore::open(options, meta.clone()).await.with_context(|| format!("opening {cluster}"))?;
    // What the table holds before it is read: once it is loaded, the
    // cluster holds at least this much, and ingest catches it up from here.
    let partitions = config.event_log.partitions;
    let table_offsets = delta.offsets(warren_ingest::CONSUMER, partitions).await?;
    // Ingest writes persons to a cluster only while it holds what the table
    // holds; one behind gets the meta store's persons replacing its own.
    let held = clickhouse.offsets(warren_ingest::CONSUMER, partitions).await?;
    let behind =
        table_offsets.iter().any(|(partition, offset)| held.get(partition).is_none_or(|h| h < offset));
    let load = if behind { PersonsLoad::Replace } else { PersonsLoad::BelowIngest };
    println!("loading the Delta table into {cluster}");
    let started = Instant::now();
    let days = backfill(&delta, &clickhouse, |day, index, total| {
        let what = if day.loaded {
            format!("loaded (read {:.1} s, insert {:.1} s)", day.read.as_secs_f64(), day.insert.as_secs_f64())
        } else {
            "already there".to_string()
        };
        println!("{index}/{total} {}: {} rows {what}", day.day, day.rows);
    })
    .await
    .context("backfill stopped; run it again to go on")?;
    let loaded: Vec<_> = days.iter().filter(|d| d.loaded).collect();
    println!(
        "events done: {} days, {} loaded ({} rows) in {:.1} s",
        days.len(),
        loaded.len(),
        loaded.iter().map(|d| d.rows).sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut reported = Instant::now();
    let projects = backfill_persons(&delta, meta.as_ref(), &clickhouse, load, |team, persons| {
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
