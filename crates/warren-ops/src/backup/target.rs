//! [`BackupTarget`]: where backups are kept — a directory or an S3 bucket,
//! behind `object_store`'s one interface, picked from the URL.
//!
//! Layout: `<id>/files/<path>` holds the bytes a backup copied and
//! `<id>/manifest.json` lists every file of the backup, its chain's
//! included. The manifest is written last, so a backup cut short leaves a
//! directory without one: listed as unfinished, never restorable, removed
//! by the next `create` or `delete`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::manifest::{Manifest, MANIFEST_FORMAT};
use crate::OpsError;

/// A place backups are written to and read from.
#[derive(Debug, Clone)]
pub struct BackupTarget {
    store: Arc<dyn ObjectStore>,
    url: String,
    /// The directory of a local target.
    local: Option<std::path::PathBuf>,
}

/// The backups a target holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups, oldest first.
    pub finished: Vec<Manifest>,
    /// Ids of backups that were cut short (no manifest).
    pub unfinished: Vec<String>,
    /// Ids of backups whose manifest cannot be read, with why: never
    /// restored or built on, deleted only when asked.
    pub damaged: Vec<(String, String)>,
}

/// Whether a folder on the target is named like a backup
/// (`20261202T133500.123Z`): anything else there is left alone.
fn is_backup_id(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'.',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

impl BackupTarget {
    /// The target at `url`: a path or `file:///path` (created if missing),
    /// or `s3://bucket/prefix` with `options` (`aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, …).
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, OpsError> {
        let opened = warren_store::open_object_store(url, options).map_err(|error| match error {
            warren_store::StoreError::UnsupportedUrl { reason, .. } => {
                OpsError::Refused(format!("backup target {url:?}: {reason}"))
            }
            other => OpsError::Refused(format!("backup target {url:?}: {other}")),
        })?;
        let (store, local) = (opened.store, opened.local);
        Ok(Self { store, url: url.to_string(), local })
    }

    /// Makes what was written to a local target durable (an object store
    /// acknowledges a put once it is durable).
    pub(crate) fn persist(&self) -> Result<(), OpsError> {
        match &self.local {
            Some(dir) => sync_filesystem(dir),
            None => Ok(()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn manifest_path(id: &str) -> Path {
        Path::from(format!("{id}/manifest.json"))
    }

    /// Where `stored_in` keeps the bytes of a backup's file `path`.
    pub(crate) fn file_path(stored_in: &str, path: &str) -> Path {
        Path::from(format!("{stored_in}/files/{path}"))
    }

    /// Where `stored_in` keeps a chunk.
    pub(crate) fn chunk_path(stored_in: &str, sha256: &str) -> Path {
        Path::from(format!("{stored_in}/chunks/{sha256}"))
    }

    /// Every backup on the target.
    pub async fn list(&self) -> Result<Listing, OpsError> {
        let top = self.store.list_with_delimiter(None).await?;
        let mut listing = Listing::default();
        for prefix in top.common_prefixes {
            let Some(id) = prefix.filename().map(str::to_string).filter(|id| is_backup_id(id)) else {
                continue;
            };
            match self.manifest(&id).await {
                Ok(manifest) => listing.finished.push(manifest),
                Err(OpsError::Target(object_store::Error::NotFound { .. })) => listing.unfinished.push(id),
                Err(error @ (OpsError::Verification(_) | OpsError::Refused(_))) => {
                    listing.damaged.push((id, error.to_string()))
                }
                Err(error) => return Err(error),
            }
        }
        listing.finished.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    /// The manifest of backup `id`.
    pub async fn manifest(&self, id: &str) -> Result<Manifest, OpsError> {
        let bytes = self.store.get(&Self::manifest_path(id)).await?.bytes().await?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| OpsError::Verification(format!("the manifest of backup {id} is unreadable: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(OpsError::Refused(format!(
                "backup {id} has manifest format {}; this build reads format {MANIFEST_FORMAT}",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Writes `manifest`, which makes its backup exist (one atomic put),
    /// once every file it lists is durable.
    pub(crate) async fn put_manifest(&self, manifest: &Manifest) -> Result<(), OpsError> {
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| OpsError::Verification(format!("encoding the manifest: {e}")))?;
        self.persist()?;
        self.store.put(&Self::manifest_path(&manifest.id), PutPayload::from(bytes)).await?;
        self.persist()
    }

    /// Deletes the manifest of backup `id`, which makes it unfinished.
    async fn remove_manifest(&self, id: &str) -> Result<(), OpsError> {
        match self.store.delete(&Self::manifest_path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes backup `id`: its manifest first (from then on it is
    /// unfinished, whatever stops this), then its files.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), OpsError> {
        self.remove_manifest(id).await?;
        let prefix = Path::from(id);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for object in objects {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        // A directory keeps its (now empty) folders, which would still
        // list as a backup.
        if let Some(dir) = &self.local {
            let folder = dir.join(id);
            match std::fs::remove_dir_all(&folder) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(OpsError::io(format!("removing {}", folder.display()))(error)),
            }
        }
        Ok(())
    }

    /// Deletes backup `id`, refusing while another backup lists its files
    /// unless `with_dependants`, which deletes those too. Returns the ids
    /// deleted, dependants first.
    pub async fn delete(&self, id: &str, with_dependants: bool) -> Result<Vec<String>, OpsError> {
        let listing = self.list().await?;
        let known = listing.finished.iter().any(|manifest| manifest.id == id)
            || listing.unfinished.iter().any(|unfinished| unfinished == id)
            || listing.damaged.iter().any(|(damaged, _)| damaged == id);
        if !known {
            return Err(OpsError::Refused(format!("no backup {id} on {}", self.url)));
        }
        // Every backup that needs `id`'s files, directly or through
        // another one that is deleted with it.
        let mut doomed = vec![id.to_string()];
        loop {
            let more: Vec<String> = listing
                .finished
                .iter()
                .filter(|manifest| !doomed.contains(&manifest.id))
                .filter(|manifest| {
                    manifest.depends_on().iter().any(|needed| doomed.iter().any(|d| d == needed))
                })
                .map(|manifest| manifest.id.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            doomed.extend(more);
        }
        let dependants = &doomed[1..];
        if !dependants.is_empty() && !with_dependants {
            return Err(OpsError::Refused(format!(
                "backup {id} holds files that {} need{}; delete {} first, or pass --with-dependants",
                dependants.join(", "),
                if dependants.len() == 1 { "s" } else { "" },
                if dependants.len() == 1 { "it" } else { "them" },
            )));
        }
        // Every manifest first, newest first: from the first removal on, no
        // backup that needs a deleted file is listed as restorable, whatever
        // stops this.
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for backup in &doomed {
            self.remove_manifest(backup).await?;
        }
        for backup in &doomed {
            self.remove(backup).await?;
        }
        Ok(doomed)
    }
}

/// Flushes the filesystem holding `dir` to disk: one call for every file a
/// command wrote there, instead of one per file.
pub(crate) fn sync_filesystem(dir: &std::path::Path) -> Result<(), OpsError> {
    let handle = std::fs::File::open(dir).map_err(OpsError::io(format!("opening {}", dir.display())))?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&handle)).map_err(|errno| OpsError::Io {
        what: format!("syncing {}", dir.display()),
        source: std::io::Error::from(errno),
    })
}

#[cfg(test)]
mod tests {
    use super::is_backup_id;

    #[test]
    fn only_folders_named_like_backups_are_backups() {
        assert!(is_backup_id("20261202T133500.123Z"));
        assert!(!is_backup_id("lost+found"));
        assert!(!is_backup_id("20261202T133500.123"));
        assert!(!is_backup_id("2026120xT133500.123Z"));
    }
}
