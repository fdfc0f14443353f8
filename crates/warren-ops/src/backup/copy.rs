//! Copying one object between stores as a stream, hashing it on the way
//! and keeping to a bandwidth limit, so neither memory nor a shared link
//! is swamped by a large file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::manifest::FileEntry;
use super::target::BackupTarget;
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

/// Keeps a run of copies under a number of bytes per second.
pub(crate) struct Throttle {
    limit: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub fn new(limit: Option<u64>) -> Self {
        Self { limit: limit.filter(|limit| *limit > 0), started: Instant::now(), bytes: 0 }
    }

    /// Counts `bytes` and sleeps until the run is back under the limit.
    pub async fn pass(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(limit) = self.limit {
            let due = Duration::from_secs_f64(self.bytes as f64 / limit as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Copies `from` on `source` to `to` on `target`, calling `copied` with
/// each chunk's size.
pub(crate) async fn copy_object(
    source: &Arc<dyn ObjectStore>,
    from: &Path,
    target: &Arc<dyn ObjectStore>,
    to: &Path,
    throttle: &mut Throttle,
    mut copied: impl FnMut(u64),
) -> Result<Copied, OpsError> {
    let mut stream = source.get(from).await?.into_stream();
    let mut writer = BufWriter::new(target.clone(), to.clone());
    let mut tally = Tally::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tally.add(&chunk);
        writer.write_all(&chunk).await.map_err(OpsError::io(format!("writing {to}")))?;
        throttle.pass(chunk.len() as u64).await;
        copied(chunk.len() as u64);
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
