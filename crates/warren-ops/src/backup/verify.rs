//! [`verify`]: every file of a backup read back from the target and
//! checked against its manifest, wherever in the chain it is kept.

use std::time::Instant;

use super::copy::{checksum, read_chunks};
use super::target::BackupTarget;
use super::{Progress, Report};
use crate::OpsError;

/// Reads every file of backup `id` and compares its size and SHA-256 with
/// the manifest's. Every file that differs or is missing is named in the
/// error.
pub async fn verify(target: &BackupTarget, id: &str, report: &Report<'_>) -> Result<(), OpsError> {
    let manifest = target.manifest(id).await?;
    let mut progress = Progress::phase("verifying");
    progress.files = manifest.files.len();
    progress.bytes = manifest.total_bytes();
    let started = Instant::now();
    let mut bad = Vec::new();
    for file in &manifest.files {
        let path = BackupTarget::file_path(&file.stored_in, &file.path);
        let read = if file.chunks.is_empty() {
            checksum(target.store(), &path).await
        } else {
            read_chunks(target.store(), file, |_| Ok(())).await
        };
        match read {
            Ok(read) if (read.size, read.sha256.as_str()) == (file.size, file.sha256.as_str()) => {}
            Ok(read) => bad.push(format!(
                "{path}: {} bytes with SHA-256 {}, the manifest says {} bytes with {}",
                read.size, read.sha256, file.size, file.sha256
            )),
            Err(OpsError::Target(object_store::Error::NotFound { .. })) => {
                bad.push(format!("{path}: missing"))
            }
            Err(OpsError::Verification(what)) => bad.push(what),
            Err(error) => return Err(error),
        }
        progress.files_done += 1;
        progress.bytes_done += file.size;
        progress.elapsed = started.elapsed();
        report(&progress);
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(OpsError::Verification(format!(
            "backup {id}: {} of {} files do not match the manifest:\n  {}",
            bad.len(),
            manifest.files.len(),
            bad.join("\n  ")
        )))
    }
}
