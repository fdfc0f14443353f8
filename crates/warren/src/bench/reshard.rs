//! `warren bench reshard`: the reshard's throughput — copy, per-day
//! verification, persons, final comparison and switch — beside a raw
//! `INSERT … SELECT FROM remote()` of the same rows between the same two
//! layouts, and beside loading the same days from the Delta table (the
//! other way a reshard could fill the new layout), in the same run.
//!
//! The data dir is left as it was: the reshard records its journal and the
//! new layout's migrations in a scratch copy of the meta store, and each
//! run resharding into databases of its own, dropped at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use warren_core::config::WarrenConfig;
use warren_core::jobs::JobBoard;
use warren_meta::{MetaSchema, MetaStore, SqlMeta};
use warren_ops::clickhouse::rebuild::{load_persons, rebuild_days, PersonsLoad};
use warren_ops::clickhouse::reshard::{Reshard, ReshardProgress};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl, Cut};

#[derive(Debug, clap::Args)]
pub struct ReshardBench {
    /// A data dir holding a Delta table and its meta store (`warren generate`).
    #[arg(long)]
    data_dir: PathBuf,
    /// The layout to reshard from; the data dir's events are loaded into
    /// it first where it lacks them.
    #[arg(long)]
    from: String,
    /// The layout to reshard to. Its database name gets a suffix per run
    /// (one for the reshard, one for the raw copy), dropped at the end.
    #[arg(long)]
    to: String,
}

pub async fn run(options: ReshardBench) -> anyhow::Result<()> {
    let config = WarrenConfig { data_dir: options.data_dir.clone(), ..WarrenConfig::default() };
    let delta = warren_node::adapters::open_event_store(&config, &JobBoard::default()).await?;
    let meta = warren_node::adapters::open_meta(&config).await?;
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("meta.db");
    meta.snapshot_into(&copy).await.context("copying the meta store")?;
    let meta = SqlMeta::connect(&format!("sqlite://{}", copy.display())).await?;
    meta.migrate().await?;
    let meta: Arc<dyn MetaStore> = Arc::new(meta);

    let store = |url: &str| -> anyhow::Result<ClickHouseStoreOptions> {
        ClickHouseStoreOptions::from_config(&warren_core::config::ClickHouseConfig {
            url: Some(url.to_string()),
            ..Default::default()
        })?
        .context("a cluster URL")
    };
    let source =
        ClickHouseStore::open(store(&options.from)?, meta.clone()).await.context("opening --from")?;
    eprintln!("loading the source layout from the data dir (days already there are skipped)");
    rebuild_days(&delta, &source, Cut::All, |_, _, _| {}).await.context("loading the source layout")?;
    load_persons(&delta, meta.as_ref(), &source, PersonsLoad::BelowIngest, |_, _| {}).await?;
    let rows: u64 = delta.rows_per_day().await?.iter().map(|(_, rows)| rows).sum();

    let stamp = warren_core::unix_millis();
    let renamed = |suffix: &str| -> anyhow::Result<String> {
        let database = ClickHouseUrl::parse(&options.to)?.database;
        let from = format!("/{database}?");
        anyhow::ensure!(options.to.contains(&from), "--to names its database as /database?cluster=…");
        Ok(options.to.replacen(&from, &format!("/{database}_{suffix}_{stamp}?"), 1))
    };

    let target_url = renamed("reshard")?;
    let target = ClickHouseStore::open(store(&target_url)?, meta.clone()).await.context("opening --to")?;
    let reshard = Reshard {
        delta: &delta,
        meta: meta.as_ref(),
        source: &source,
        target: &target,
        partitions: config.event_log.partitions,
        batch_rows: warren_ops::clickhouse::reshard::BATCH_ROWS,
    };
    eprintln!("resharding {rows} rows");
    let started = Instant::now();
    let (mut copied_at, mut verified_at) = (started, started);
    let journal = reshard
        .run(|step| match step {
            ReshardProgress::Day { index, total, .. } => {
                eprintln!("{index}/{total} days copied and verified");
                copied_at = Instant::now();
            }
            ReshardProgress::Persons { .. } => copied_at = Instant::now(),
            ReshardProgress::Verified { .. } => verified_at = Instant::now(),
            _ => {}
        })
        .await?;
    let reshard_seconds = started.elapsed().as_secs_f64();
    let from_delta = journal.days.values().filter(|day| day.from == "delta").count();
    anyhow::ensure!(
        from_delta == 0,
        "{from_delta} days were loaded from Delta: the source layout lacked them"
    );
    let copy_seconds = (copied_at - started).as_secs_f64();
    let final_seconds = (verified_at - copied_at).as_secs_f64();
    let switch_seconds = reshard_seconds - (verified_at - started).as_secs_f64();

    let raw_url = renamed("raw")?;
    let raw = ClickHouseStore::open(store(&raw_url)?, meta.clone()).await.context("opening the raw copy")?;
    let started = Instant::now();
    raw.copy_from(&source, None).await.context("the raw INSERT … SELECT FROM remote()")?;
    let raw_seconds = started.elapsed().as_secs_f64();

    let loaded_url = renamed("delta")?;
    let loaded =
        ClickHouseStore::open(store(&loaded_url)?, meta.clone()).await.context("opening the Delta load")?;
    let started = Instant::now();
    rebuild_days(&delta, &loaded, Cut::All, |_, _, _| {}).await.context("loading from the Delta table")?;
    let loaded_seconds = started.elapsed().as_secs_f64();

    for layout in [&target, &raw, &loaded] {
        layout.migrator().down(0, |_| std::ops::ControlFlow::Continue(())).await?;
    }
    let rate = |seconds: f64| rows as f64 / seconds.max(0.001);
    println!("rows: {rows} over {} days", journal.days.len());
    println!(
        "warren clickhouse reshard: {reshard_seconds:.1} s = {:.0} rows/s (copy and per-day verification, \
         persons loading alongside: {copy_seconds:.1} s; final comparison: {final_seconds:.1} s; switch: \
         {switch_seconds:.1} s)",
        rate(reshard_seconds)
    );
    println!(
        "raw INSERT … SELECT FROM remote(), no verification: {raw_seconds:.1} s = {:.0} rows/s",
        rate(raw_seconds)
    );
    println!(
        "each day loaded from the Delta table and verified instead: {loaded_seconds:.1} s = {:.0} rows/s",
        rate(loaded_seconds)
    );
    println!("ratio: {:.2} of the raw copy's rate (target ≥ 0.70)", raw_seconds / reshard_seconds);
    Ok(())
}
