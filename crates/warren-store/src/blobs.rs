//! [`ObjectBlobStore`]: the [`BlobStore`] port over `object_store`, on a
//! directory or an S3 bucket picked from a URL ([`open_object_store`], which
//! backup targets use too).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use warren_core::ports::{BlobStore, PortError};

use crate::StoreError;

/// An object store opened from a URL, and its directory when it is local.
#[derive(Debug, Clone)]
pub struct OpenedObjectStore {
    pub store: Arc<dyn ObjectStore>,
    /// The directory of a local store (created when missing).
    pub local: Option<PathBuf>,
}

/// The store at `url`: a path or `file:///path` (created if missing), or
/// `s3://bucket/prefix` with `options` (`aws_endpoint`, `aws_region`,
/// `aws_access_key_id`, …, as `object_store` names them).
pub fn open_object_store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<OpenedObjectStore, StoreError> {
    let bad = |reason: String| StoreError::UnsupportedUrl { url: url.to_string(), reason };
    if url.starts_with("s3://") || url.starts_with("s3a://") {
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options.iter()).map_err(|e| bad(e.to_string()))?;
        return Ok(OpenedObjectStore { store: Arc::new(PrefixStore::new(store, prefix)), local: None });
    }
    let path = match url.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None if !url.contains("://") => PathBuf::from(url),
        None => return Err(bad("use a directory, file:///path or s3://bucket/prefix".into())),
    };
    std::fs::create_dir_all(&path).map_err(|e| bad(format!("creating {}: {e}", path.display())))?;
    let store = LocalFileSystem::new_with_prefix(&path).map_err(|e| bad(e.to_string()))?;
    Ok(OpenedObjectStore { store: Arc::new(store), local: Some(path) })
}

/// Blobs in an object store. An S3 put is durable once acknowledged; on a
/// directory `object_store` renames a written file into place without
/// syncing it, so each put here syncs the file and its folder before it
/// returns — ingest commits its offsets only after the blob is safe.
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    opened: OpenedObjectStore,
}

impl ObjectBlobStore {
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        Ok(Self { opened: open_object_store(url, options)? })
    }

    fn sync_local(&self, key: &str) -> std::io::Result<()> {
        let Some(root) = &self.opened.local else { return Ok(()) };
        let file = root.join(key);
        std::fs::File::open(&file)?.sync_all()?;
        // Every folder the put may have created, up to the root.
        let mut folder = file.parent();
        while let Some(dir) = folder {
            std::fs::File::open(dir)?.sync_all()?;
            if dir == root {
                break;
            }
            folder = dir.parent();
        }
        Ok(())
    }
}

fn port(error: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::new(error)
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PortError> {
        self.opened.store.put(&Path::from(key), PutPayload::from(bytes)).await.map_err(port)?;
        let this = self.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || this.sync_local(&key)).await.map_err(port)?.map_err(port)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        match self.opened.store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(port)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(port(error)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        match self.opened.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(port(error)),
        }
    }
}
