//! `warren backup …` and `warren restore`: the deployment's backups on a
//! directory or S3 target (`[backup] url`, or `--to`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use warren_core::config::WarrenConfig;
use warren_core::jobs::JobBoard;
use warren_log::SegmentLog;
use warren_ops::backup::{self, BackupKind, BackupTarget, CreateOptions, Manifest, Progress, Sources};

use crate::config;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup: the meta store, the events table and the
    /// configuration (secrets redacted), as of one moment. Safe to run
    /// while Warren serves; a run cut short is cleaned up by the next.
    Create(CreateArgs),
    /// List the backups on the target.
    List(TargetArgs),
    /// Read every file of a backup back and check it against its manifest.
    Verify(IdArgs),
    /// Delete a backup; refused while later backups need its files.
    Delete(DeleteArgs),
    /// Restore a backup (the newest when none is named) into a scratch
    /// directory and check it: every file, every day's events and
    /// checksum, and insights answered as when the backup was taken.
    Drill(DrillArgs),
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Where backups are: a directory or s3://bucket/prefix (`[backup] url`
    /// when unset; S3 options come from `[backup] storage_options`).
    #[arg(long)]
    to: Option<String>,
    /// The data dir (the configuration's when unset).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Copy every file (the default).
    #[arg(long, conflicts_with = "incremental")]
    full: bool,
    /// Copy only what the newest backup's chain does not hold.
    #[arg(long)]
    incremental: bool,
    /// Copy at most this many MiB per second.
    #[arg(long)]
    max_mib_per_sec: Option<f64>,
    /// Skip recording each day's checksum and the drill's answers (two
    /// reads of the whole events table); `warren backup drill` cannot
    /// check such a backup.
    #[arg(long)]
    no_checks: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The backup's id, as `warren backup list` shows it.
    id: String,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The backup to drill; the newest taken with checks when unset.
    id: Option<String>,
    /// Where to restore it (new or empty); a temporary directory, removed
    /// after a drill that passes, when unset.
    #[arg(long)]
    scratch: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: IdArgs,
    /// Delete the backups that need this one's files too.
    #[arg(long)]
    with_dependants: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore, as `warren backup list` shows it.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    id: Option<String>,
    /// Restore the deployment as it was at this moment (RFC 3339, or
    /// `YYYY-MM-DD HH:MM:SS` in UTC): the newest backup before it, and the
    /// archived event log replayed up to the events received by then.
    #[arg(long, value_parser = parse_moment)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the backups are (see `warren backup create --to`).
    #[arg(long)]
    from: Option<String>,
    /// A new, empty directory to restore into; start Warren on it with
    /// `warren serve --data-dir`.
    #[arg(long)]
    data_dir: PathBuf,
}

fn load(
    config_path: Option<&std::path::Path>,
    args: &TargetArgs,
) -> anyhow::Result<(WarrenConfig, BackupTarget)> {
    let mut config = config::load(config_path)?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let target = open_target(&config, args.to.as_deref())?;
    Ok((config, target))
}

fn open_target(config: &WarrenConfig, to: Option<&str>) -> anyhow::Result<BackupTarget> {
    let url = to
        .map(str::to_string)
        .or_else(|| config.backup.url.clone())
        .context("no backup target: pass --to DIR|s3://bucket/prefix or set [backup] url")?;
    Ok(BackupTarget::open(&url, &config.backup.storage_options)?)
}

pub async fn run(config_path: Option<PathBuf>, command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create(args) => create(config_path, args).await,
        BackupCommand::List(args) => list(config_path, args).await,
        BackupCommand::Verify(args) => {
            let (_, target) = load(config_path.as_deref(), &args.target)?;
            backup::verify(&target, &args.id, &progress_printer()).await?;
            println!("backup {} verified: every file matches its manifest", args.id);
            Ok(())
        }
        BackupCommand::Drill(args) => drill(config_path, args).await,
        BackupCommand::Delete(args) => {
            let (_, target) = load(config_path.as_deref(), &args.target.target)?;
            for id in target.delete(&args.target.id, args.with_dependants).await? {
                println!("deleted backup {id}");
            }
            Ok(())
        }
    }
}

async fn create(config_path: Option<PathBuf>, args: CreateArgs) -> anyhow::Result<()> {
    let (config, target) = load(config_path.as_deref(), &args.target)?;
    let meta = warren_node::adapters::connect_meta(&config).await?;
    let table = warren_node::adapters::open_event_store(&config, &JobBoard::default()).await?;
    let log = SegmentLog::info_in(&config.data_dir.join("log"))?;
    let log_partitions = log.as_ref().map_or(config.event_log.partitions, |log| log.partitions);
    let kind = match (args.full, args.incremental) {
        (false, true) => BackupKind::Incremental,
        _ => BackupKind::Full,
    };
    let options = CreateOptions {
        kind,
        record_checks: !args.no_checks,
        scheduled: false,
        max_bytes_per_sec: args.max_mib_per_sec.map(|mib| (mib * 1024.0 * 1024.0).max(1.0) as u64),
    };
    let sources = Sources {
        meta: meta.as_ref(),
        table: table.as_ref(),
        log_partitions,
        log_id: log.and_then(|log| log.id),
        config: config.redacted(),
        recordings: warren_node::adapters::open_recording_objects(&config)?.store,
    };
    let started = Instant::now();
    let manifest = backup::create(&target, sources, options, &progress_printer())
        .await
        .map_err(|e| stopped(e, "the backup stopped; run it again (what it left is cleaned up)"))?;
    if args.target.json {
        println!("{}", serde_json::to_string(&summary(&manifest))?);
    } else {
        println!(
            "backup {} ({:?}) on {}: {} events, {} files, {} copied of {} in {:.1} s",
            manifest.id,
            manifest.kind,
            target.url(),
            manifest.events(),
            manifest.files.len(),
            mib(manifest.copied_bytes()),
            mib(manifest.total_bytes()),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn drill(config_path: Option<PathBuf>, args: DrillArgs) -> anyhow::Result<()> {
    let (_, target) = load(config_path.as_deref(), &args.target)?;
    let id = match args.id {
        Some(id) => id,
        None => {
            let listing = target.list().await?;
            let newest = listing.finished.iter().rev().find(|manifest| manifest.checks_recorded);
            newest
                .map(|manifest| manifest.id.clone())
                .with_context(|| format!("{} holds no backup taken with checks to drill", target.url()))?
        }
    };
    let temporary = match &args.scratch {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("warren-drill-").tempdir()?),
    };
    let scratch = args
        .scratch
        .clone()
        .unwrap_or_else(|| temporary.as_ref().map(|dir| dir.path().to_path_buf()).unwrap_or_default());
    let started = Instant::now();
    let drilled = backup::drill(&target, &id, &scratch, &progress_printer()).await;
    let drilled = match drilled {
        Ok(drilled) => drilled,
        Err(error) => {
            // Kept for a look at what differs.
            let kept = temporary.map(tempfile::TempDir::keep);
            let kept =
                kept.map(|dir| format!(" (the restore is kept in {})", dir.display())).unwrap_or_default();
            return Err(anyhow::Error::new(error).context(format!("the drill of backup {id} failed{kept}")));
        }
    };
    if args.target.json {
        println!(
            "{}",
            serde_json::json!({"backup": drilled.backup, "days": drilled.days, "events": drilled.events,
                "answers": drilled.answers, "seconds": started.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "drill of backup {} passed in {:.1} s: restored, {} events on {} days match their checksums, \
             {} insight answers match those recorded at backup time",
            drilled.backup,
            started.elapsed().as_secs_f64(),
            drilled.events,
            drilled.days,
            drilled.answers
        );
    }
    Ok(())
}

async fn list(config_path: Option<PathBuf>, args: TargetArgs) -> anyhow::Result<()> {
    let (_, target) = load(config_path.as_deref(), &args)?;
    let listing = target.list().await?;
    if args.json {
        let finished: Vec<_> = listing.finished.iter().map(summary).collect();
        let damaged: Vec<_> =
            listing.damaged.iter().map(|(id, why)| serde_json::json!({"id": id, "error": why})).collect();
        let reach: Vec<_> = backup::reach(&target)
            .await?
            .iter()
            .map(|reach| serde_json::json!({"backup": reach.backup, "from_ms": reach.from_ms, "until_ms": reach.until_ms}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "backups": finished, "unfinished": listing.unfinished, "damaged": damaged, "reach": reach })
        );
        return Ok(());
    }
    if listing.finished.is_empty() {
        println!("no backups on {}", target.url());
    }
    for manifest in &listing.finished {
        println!(
            "{}  {:<11}  {}  {} events  {} ({} copied){}",
            manifest.id,
            format!("{:?}", manifest.kind).to_lowercase(),
            manifest.created_at,
            manifest.events(),
            mib(manifest.total_bytes()),
            mib(manifest.copied_bytes()),
            manifest.parent.as_ref().map(|parent| format!("  on {parent}")).unwrap_or_default()
        );
    }
    for (id, why) in &listing.damaged {
        println!("{id}  damaged: {why}");
    }
    for id in &listing.unfinished {
        println!("{id}  unfinished (cut short; the next `warren backup create` removes it)");
    }
    match backup::reach(&target).await {
        Ok(reach) => {
            println!("restorable moments (`warren restore --at`): {}", backup::describe_windows(&reach))
        }
        Err(error) => println!(
            "restorable moments (`warren restore --at`): unknown, the archive cannot be read: {error}"
        ),
    }
    Ok(())
}

pub async fn restore(config_path: Option<PathBuf>, args: RestoreArgs) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    if config.meta_url.is_some() || config.event_store.url.is_some() {
        anyhow::bail!(
            "restore fills a data directory with the embedded stores; this configuration names an \
             external meta store or events table, which a restore does not write: run it with a \
             configuration without meta_url and [event_store] url"
        );
    }
    let target = open_target(&config, args.from.as_deref())?;
    let started = Instant::now();
    match (&args.id, args.at) {
        (_, Some(at)) => {
            let restored = backup::restore_at(
                &target,
                at.timestamp_millis(),
                &args.data_dir,
                config.ingest.clone(),
                &progress_printer(),
            )
            .await
            .map_err(|e| stopped(e, "the restore stopped; run it again to start it over"))?;
            println!(
                "restored {} into {}: backup {} and {} archived events received by then replayed, \
                 {} events in all, in {:.1} s; checked against the manifest",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                args.data_dir.display(),
                restored.manifest.id,
                restored.replayed,
                restored.events,
                started.elapsed().as_secs_f64()
            );
        }
        (Some(id), None) => {
            let manifest = backup::restore(&target, id, &args.data_dir, &progress_printer())
                .await
                .map_err(|e| stopped(e, "the restore stopped; run it again to start it over"))?;
            println!(
                "restored backup {} into {}: {} events, {} files, {} in {:.1} s; checked against the manifest",
                manifest.id,
                args.data_dir.display(),
                manifest.events(),
                manifest.files.len(),
                mib(manifest.total_bytes()),
                started.elapsed().as_secs_f64()
            );
        }
        (None, None) => anyhow::bail!("name a backup, or a moment with --at"),
    }
    println!("start it with: warren serve --data-dir {}", args.data_dir.display());
    if config.clickhouse.url.is_some() {
        println!("the ClickHouse cluster is not in backups: load it with `warren clickhouse rebuild`");
    }
    Ok(())
}

/// An operation's error, with what to do about it unless it refused to
/// start (the refusal says what to do instead).
fn stopped(error: warren_ops::OpsError, what_to_do: &'static str) -> anyhow::Error {
    match error {
        warren_ops::OpsError::Refused(_) => error.into(),
        other => anyhow::Error::new(other).context(what_to_do),
    }
}

/// A moment as `--at` takes it: RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC.
fn parse_moment(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.to_utc());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|at| at.and_utc()).map_err(|_| {
        format!("{text:?} is not a moment: use RFC 3339 (2026-12-02T13:45:00Z) or 2026-12-02 13:45:00 (UTC)")
    })
}

/// What scripts read of a backup.
fn summary(manifest: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "id": manifest.id,
        "kind": manifest.kind,
        "parent": manifest.parent,
        "created_at": manifest.created_at,
        "events": manifest.events(),
        "files": manifest.files.len(),
        "bytes": manifest.total_bytes(),
        "copied_bytes": manifest.copied_bytes(),
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints progress to stderr: each new phase, and the copy's standing at
/// most once a second.
fn progress_printer() -> impl Fn(&Progress) + Send + Sync {
    let last: Mutex<(&'static str, Option<Instant>)> = Mutex::new(("", None));
    move |progress: &Progress| {
        let mut last = last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let new_phase = last.0 != progress.phase;
        let due = last.1.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        let done = progress.files > 0 && progress.files_done == progress.files;
        if !new_phase && !due && !done {
            return;
        }
        *last = (progress.phase, Some(Instant::now()));
        if progress.files == 0 {
            eprintln!("{}…", progress.phase);
        } else if progress.bytes == 0 {
            eprintln!("{}: {}/{}", progress.phase, progress.files_done, progress.files);
        } else {
            let seconds = progress.elapsed.as_secs_f64().max(0.001);
            eprintln!(
                "{}: {}/{} files, {} of {}, {:.1} MiB/s",
                progress.phase,
                progress.files_done,
                progress.files,
                mib(progress.bytes_done),
                mib(progress.bytes),
                progress.bytes_done as f64 / (1024.0 * 1024.0) / seconds
            );
        }
    }
}
