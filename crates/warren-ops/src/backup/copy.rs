//! Copying one object between stores as a stream, hashing it on the way
//! and keeping to a bandwidth limit, so neither memory nor a shared link
//! is swamped by a large file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::manifest::FileEntry;
use super::target::BackupTarget;
use super::{Progress, Report};
use crate::OpsError;

/// What a copy read.
pub(crate) struct Copied {
    pub size: u64,
    pub sha256: String,
}

/// The size and SHA-256 of bytes as they stream past.
#[derive(Default)]
pub(crate) struct Tally {
    hasher: Sha256,
    size: u64,
}

impl Tally {
    pub fn add(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    pub fn finish(self) -> Copied {
        Copied { size: self.size, sha256: hex::encode(self.hasher.finalize()) }
    }
}

/// How many files a backup or restore copies at once: enough to keep a
/// disk or an S3 connection pool busy while hashing goes on, few enough
/// that memory stays a handful of buffers.
pub(crate) const COPIES_AT_ONCE: usize = 8;

/// The buffer of each copy's upload, which a multipart upload sends as a
/// part once full.
const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;

/// The progress and bandwidth of a run of copies, several going at once:
/// they count their bytes here, and wait here when the run is over its
/// limit of bytes per second.
pub(crate) struct CopyRun<'a> {
    progress: Mutex<Progress>,
    limit: Option<u64>,
    started: Instant,
    report: &'a Report<'a>,
}

impl<'a> CopyRun<'a> {
    /// Starts a run of `files` files and `bytes` bytes to copy.
    pub fn new(files: usize, bytes: u64, limit: Option<u64>, report: &'a Report<'a>) -> Self {
        let mut progress = Progress::phase("copying");
        progress.files = files;
        progress.bytes = bytes;
        report(&progress);
        Self {
            progress: Mutex::new(progress),
            limit: limit.filter(|limit| *limit > 0),
            started: Instant::now(),
            report,
        }
    }

    /// Counts `bytes` copied and returns how long to wait to be back
    /// under the limit.
    #[must_use]
    pub fn count(&self, bytes: u64) -> Duration {
        let mut progress = self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        progress.bytes_done += bytes;
        progress.elapsed = self.started.elapsed();
        (self.report)(&progress);
        let Some(limit) = self.limit else { return Duration::ZERO };
        Duration::from_secs_f64(progress.bytes_done as f64 / limit as f64).saturating_sub(progress.elapsed)
    }

    /// Counts `bytes` copied and waits until the run is back under the
    /// limit.
    pub async fn copied(&self, bytes: u64) {
        let wait = self.count(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts a file done.
    pub fn file_done(&self) {
        let mut progress = self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        progress.files_done += 1;
        (self.report)(&progress);
    }
}

/// Copies `from` on `source` to `to` on `target`, counting its bytes in
/// `run`.
pub(crate) async fn copy_object(
    source: &Arc<dyn ObjectStore>,
    from: &Path,
    target: &Arc<dyn ObjectStore>,
    to: &Path,
    run: &CopyRun<'_>,
) -> Result<Copied, OpsError> {
    let mut stream = source.get(from).await?.into_stream();
    // S3's smallest part, two in flight: with COPIES_AT_ONCE copies, at
    // most 8 × 15 MiB of a run's data is in memory at once.
    let mut writer =
        BufWriter::with_capacity(target.clone(), to.clone(), UPLOAD_PART_BYTES).with_max_concurrency(2);
    let mut tally = Tally::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tally.add(&chunk);
        writer.write_all(&chunk).await.map_err(OpsError::io(format!("writing {to}")))?;
        run.copied(chunk.len() as u64).await;
    }
    writer.shutdown().await.map_err(OpsError::io(format!("finishing {to}")))?;
    Ok(tally.finish())
}

/// The size and SHA-256 of `path` on `store`, read as a stream.
pub(crate) async fn checksum(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Copied, OpsError> {
    let mut stream = store.get(path).await?.into_stream();
    let mut tally = Tally::default();
    while let Some(chunk) = stream.next().await {
        tally.add(&chunk?);
    }
    Ok(tally.finish())
}

/// The bytes of `entry` read from `target` piece by piece, each chunk
/// checked against its SHA-256 and handed to `sink`; what the whole file
/// read to. A chunk that is missing or wrong is an error naming it.
pub(crate) async fn read_chunks(
    target: &Arc<dyn ObjectStore>,
    entry: &FileEntry,
    mut sink: impl FnMut(&[u8]) -> Result<(), OpsError>,
) -> Result<Copied, OpsError> {
    let mut file = Tally::default();
    for chunk in &entry.chunks {
        let path = BackupTarget::chunk_path(&chunk.stored_in, &chunk.sha256);
        let bytes = match target.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(OpsError::Verification(format!("{path} (a chunk of {}): missing", entry.path)))
            }
            Err(error) => return Err(error.into()),
        };
        let mut piece = Tally::default();
        piece.add(&bytes);
        let read = piece.finish();
        if (read.size, read.sha256.as_str()) != (chunk.size, chunk.sha256.as_str()) {
            return Err(OpsError::Verification(format!(
                "{path} (a chunk of {}): {} bytes with SHA-256 {}, the manifest says {} bytes with {}",
                entry.path, read.size, read.sha256, chunk.size, chunk.sha256
            )));
        }
        file.add(&bytes);
        sink(&bytes)?;
    }
    Ok(file.finish())
}
