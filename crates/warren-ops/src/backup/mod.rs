//! Backups of a deployment and restoring them (`warren backup …`,
//! `warren restore`).
//!
//! A backup holds a consistent moment of the deployment: a snapshot of
//! the meta store and the events table's version that matches its ingest
//! offsets (see [`create`]), plus the configuration with secrets redacted.
//! The event log is not copied: its records up to that moment are in the
//! table. Instead, the log is archived to the target continuously
//! ([`archive_log`], a job of `warren serve`), and [`restore_at`] replays
//! it on top of a backup to restore any moment the two reach. Backups live on a [`BackupTarget`] (a directory or S3), each
//! described by a [`Manifest`] listing every file with its size and
//! SHA-256. An incremental backup copies only what its chain does not
//! hold: new table files (they never change once written) and the chunks
//! of the meta store's snapshot that changed. A backup other backups
//! depend on cannot be deleted alone; [`apply_retention`] keeps what a
//! policy asks for, chains whole. [`verify`] re-reads a backup; [`restore`]
//! puts one back into a new data directory, checks it and creates an event
//! log that goes on from the restored offsets; [`drill`] restores into a
//! scratch directory and compares each day's checksum and a few insights'
//! answers with those recorded when the backup was taken.
//!
//! Every command can be killed and run again: a backup exists once its
//! manifest, written last, does; a restore cut short is started over.

mod archive;
mod copy;
mod create;
mod drill;
mod manifest;
mod point_in_time;
mod restore;
mod retention;
mod target;
mod verify;

use std::time::Duration;

pub use archive::{archive_log, archive_progress, prune_archive, ArchiveProgress, ArchiveRun};
pub use create::{create, CreateOptions, Sources};
pub use drill::{drill, DrillReport};
pub use manifest::{BackupKind, DayCheck, FileEntry, Manifest, RecordedAnswer, MANIFEST_FORMAT};
pub use point_in_time::{describe_windows, reach, restore_at, PointInTime, Reach};
pub use restore::restore;
pub use retention::{apply_retention, backups_to_keep, RetentionOutcome, RetentionPolicy};
pub use target::{BackupTarget, Listing};
pub use verify::verify;

/// Where a command stands, for a progress line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// What it is doing.
    pub phase: &'static str,
    pub files_done: usize,
    pub files: usize,
    pub bytes_done: u64,
    pub bytes: u64,
    /// Time spent in this phase.
    pub elapsed: Duration,
}

impl Progress {
    fn phase(phase: &'static str) -> Self {
        Self { phase, ..Self::default() }
    }
}

/// Receives progress; called often, so it decides how often to show it.
pub type Report<'a> = dyn Fn(&Progress) + Send + Sync + 'a;
