//! [`Manifest`]: what one backup holds, written to the target after every
//! file it lists — a backup exists once its manifest does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Whether a backup copied everything or built on the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Copies every file; depends on no other backup.
    Full,
    /// Copies only the files its parent's chain does not hold, and lists
    /// the rest where the chain keeps them.
    Incremental,
}

/// One file of a backup: its path in a restored data directory, its size
/// and SHA-256, and where its bytes are — whole in the `files/` of
/// `stored_in` (this backup or an earlier one of its chain), or, when
/// `chunks` is not empty, as those chunks in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub stored_in: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Chunk>,
}

/// A piece of a chunked file, kept in the `chunks/` of `stored_in` under
/// its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub size: u64,
    pub sha256: String,
    pub stored_in: String,
}

impl FileEntry {
    /// Where each piece of the file's bytes is kept, with its size.
    pub fn pieces(&self) -> Vec<(&str, u64)> {
        if self.chunks.is_empty() {
            vec![(self.stored_in.as_str(), self.size)]
        } else {
            self.chunks.iter().map(|chunk| (chunk.stored_in.as_str(), chunk.size)).collect()
        }
    }
}

/// Everything a backup holds and what it was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub kind: BackupKind,
    /// The backup an incremental one built on.
    pub parent: Option<String>,
    /// When the snapshot of the meta store was taken (RFC 3339).
    pub created_at: String,
    pub warren_version: String,
    /// The events table's version the backup holds.
    pub table_version: u64,
    /// The event log's partition count.
    pub log_partitions: u32,
    /// The id of the log the ingest offsets belong to, under which its
    /// archive is kept (`None`: taken of a log without one, which
    /// cannot be rolled forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// Taken by `warren serve`'s schedule, which its retention may delete;
    /// backups taken by hand are left to their owner.
    #[serde(default)]
    pub scheduled: bool,
    /// Ingest's offsets in the meta store snapshot, which the table's
    /// version matches: a restored log starts numbering records there.
    pub ingest_offsets: BTreeMap<u32, u64>,
    /// Events per day (`YYYY-MM-DD`) in the table's version: what a
    /// restore checks the restored table against.
    pub events_per_day: BTreeMap<String, u64>,
    /// Rows and an order-free checksum of them per day, and the drill's
    /// insights answered at the backup's moment: what `warren backup
    /// drill` compares a restore with. Empty when the backup was taken
    /// without them (`CreateOptions::record_checks`), which
    /// `checks_recorded` tells apart from a backup of an empty table.
    #[serde(default)]
    pub checks_recorded: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<String, DayCheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<RecordedAnswer>,
    pub files: Vec<FileEntry>,
}

/// One day of the events table as backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCheck {
    pub rows: u64,
    /// [`warren_store::DaySummary::checksum`], in hex.
    pub checksum: String,
}

/// An insight's answer at the backup's moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedAnswer {
    pub team_id: i64,
    pub name: String,
    pub query: serde_json::Value,
    pub results: serde_json::Value,
}

impl Manifest {
    /// Bytes of every file the backup lists.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    /// Bytes this backup copied itself.
    pub fn copied_bytes(&self) -> u64 {
        let pieces = self.files.iter().flat_map(FileEntry::pieces);
        pieces.filter(|(stored_in, _)| *stored_in == self.id).map(|(_, size)| size).sum()
    }

    /// Events in the backup.
    pub fn events(&self) -> u64 {
        self.events_per_day.values().sum()
    }

    /// The other backups whose files this one lists: it cannot be
    /// restored without them.
    pub fn depends_on(&self) -> BTreeSet<&str> {
        let pieces = self.files.iter().flat_map(FileEntry::pieces);
        pieces.map(|(stored_in, _)| stored_in).filter(|id| *id != self.id).collect()
    }
}
