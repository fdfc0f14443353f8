//! `warren bench backup`: a full backup and its restore, timed beside
//! `tar` writing and reading the same files in the same run (the reference
//! any copy of files is held to), then the bytes an incremental backup
//! copies after 1% more events.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use warren_core::config::WarrenConfig;
use warren_ops::backup::{self, BackupKind, BackupTarget, CreateOptions, Manifest, Sources};

use super::query::{ensure_dataset, DAYS, START};

#[derive(Debug, clap::Args)]
pub struct BackupBench {
    /// People in the generated story (about 50 events each).
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Where the dataset lives; generated there when it has no events.
    /// The incremental step adds 1% more events to it.
    #[arg(long, default_value = "warren-bench-query")]
    data_dir: PathBuf,
    /// Where the backups, restores and tar files go (a temporary directory
    /// when unset; it needs about three times the dataset's size).
    #[arg(long)]
    scratch: Option<PathBuf>,
}

pub async fn run(options: BackupBench) -> anyhow::Result<()> {
    ensure_dataset(&options.data_dir, options.users).await?;
    let scratch = match &options.scratch {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let config = WarrenConfig { data_dir: options.data_dir.clone(), ..WarrenConfig::default() };
    let target_dir = scratch.path().join("backups");
    let target =
        BackupTarget::open(target_dir.to_str().context("scratch path is not UTF-8")?, &Default::default())?;

    let started = Instant::now();
    let full = take(&config, &target, BackupKind::Full).await?;
    let backup_secs = started.elapsed().as_secs_f64();

    // tar of the very files the backup holds, read from the data dir (the
    // meta store's live file stands in for its snapshot's rows).
    let list = scratch.path().join("files.txt");
    // (The backup keeps the meta store as rows; tar copies its file.)
    let paths: Vec<&str> = full
        .files
        .iter()
        .map(|file| if file.path == "meta.rows" { "meta.db" } else { file.path.as_str() })
        .filter(|p| !p.starts_with("config"))
        .collect();
    std::fs::write(&list, paths.join("\n"))?;
    let archive = scratch.path().join("data.tar");
    let tar_secs = timed(
        Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&options.data_dir).arg("-T").arg(&list),
    )?;
    // The backup's files are durable on disk once `create` returns; tar's
    // once synced.
    let sync_secs = timed(Command::new("sync").arg("-f").arg(&archive))?;
    let tar_secs = tar_secs + sync_secs;

    let restored = scratch.path().join("restored");
    let started = Instant::now();
    backup::restore(&target, &full.id, &restored, &|_| {}).await?;
    let restore_secs = started.elapsed().as_secs_f64();
    let untarred = scratch.path().join("untarred");
    std::fs::create_dir_all(&untarred)?;
    let untar_secs = timed(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&untarred))?;
    // A restore returns with its files durable; tar's are once synced.
    let untar_secs = untar_secs + timed(Command::new("sync").arg("-f").arg(&untarred))?;

    // 1% more events, through the log and ingest as the dataset was made.
    let more = (options.users / 100).max(1);
    let story = crate::generate::Story {
        seed: 2,
        users: more,
        days: DAYS,
        start: NaiveDate::parse_from_str(START, "%Y-%m-%d")?,
        signup_rate: 0.4,
        purchase_rate: 0.3,
    };
    crate::generate::write_direct(&story, &config).await?;
    let incremental = take(&config, &target, BackupKind::Incremental).await?;

    let bytes = full.total_bytes() as f64 / (1024.0 * 1024.0);
    println!("dataset: {} events, {} files, {bytes:.1} MiB", full.events(), full.files.len());
    println!(
        "full backup:  {:.2} s = {:.1} MiB/s; tar -c (+ sync) of the same files: {tar_secs:.2} s = {:.1} MiB/s; ratio {:.2} (target >= 0.8)",
        backup_secs,
        bytes / backup_secs,
        bytes / tar_secs,
        tar_secs / backup_secs
    );
    println!(
        "restore:      {:.2} s = {:.1} MiB/s; tar -x (+ sync) of the same files: {untar_secs:.2} s = {:.1} MiB/s; ratio {:.2} (target >= 0.8)",
        restore_secs,
        bytes / restore_secs,
        bytes / untar_secs,
        untar_secs / restore_secs
    );
    println!(
        "incremental after {} more events ({:.2}%): copied {:.2} MiB = {:.2}% of the full backup (target <= 2%)",
        incremental.events() - full.events(),
        100.0 * (incremental.events() - full.events()) as f64 / full.events().max(1) as f64,
        incremental.copied_bytes() as f64 / (1024.0 * 1024.0),
        100.0 * incremental.copied_bytes() as f64 / full.total_bytes().max(1) as f64
    );
    // What the incremental copied, by kind: what to work on when it is
    // too much.
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    for file in &incremental.files {
        let kind = match file.path.as_str() {
            path if path.contains("/_delta_log/") => "table commits and checkpoints",
            path if path.starts_with("events/") => "table data files",
            "meta.rows" => "meta store rows",
            _ => "configuration",
        };
        let copied = file
            .pieces()
            .into_iter()
            .filter(|(stored_in, _)| *stored_in == incremental.id)
            .map(|(_, size)| size);
        *kinds.entry(kind).or_default() += copied.sum::<u64>();
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(kind, bytes)| format!("{kind} {:.2} MiB", *bytes as f64 / (1024.0 * 1024.0)))
        .collect();
    println!("  of which: {}", kinds.join(", "));
    Ok(())
}

async fn take(config: &WarrenConfig, target: &BackupTarget, kind: BackupKind) -> anyhow::Result<Manifest> {
    // Closed before returning: a pool dropped open would fold its
    // write-ahead log into meta.db while tar reads it.
    let meta = warren_meta::SqlMeta::connect(&config.meta_url()).await?;
    let table = warren_node::adapters::open_event_store(config, &Default::default()).await?;
    let log = warren_log::SegmentLog::info_in(&config.data_dir.join("log"))?;
    let partitions = log.as_ref().map_or(config.event_log.partitions, |log| log.partitions);
    let sources = Sources {
        meta: &meta,
        table: table.as_ref(),
        log_partitions: partitions,
        log_id: log.and_then(|log| log.id),
        config: config.redacted(),
        recordings: warren_node::adapters::open_recording_objects(config)?.store,
    };
    let options = CreateOptions { kind, record_checks: false, scheduled: false, max_bytes_per_sec: None };
    let created = backup::create(target, sources, options, &|_| {}).await;
    meta.close().await;
    Ok(created?)
}

/// Runs `command` and returns how long it took.
fn timed(command: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(started.elapsed().as_secs_f64())
}
