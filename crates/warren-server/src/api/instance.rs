//! Warren's own state, for the dashboard's Overview and System pages:
//! the monitor's live health history, and what this process is — its
//! version, configuration (secrets redacted), meta-store migrations,
//! background jobs and disk usage. Only the deployment's operators may
//! read it ([`Caller::instance_admin`]).

use std::path::{Path as FsPath, PathBuf};

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Caller;
use super::time_json;
use crate::{ApiError, AppState};

pub(super) async fn health(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.instance_admin(&state).await?;
    let monitor = &state.monitor;
    Ok(Json(json!({
        "sample_interval_ms": monitor.sample_interval_ms(),
        "points": monitor.history(),
        "partitions": monitor.partitions(),
    })))
}

pub(super) async fn system(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.instance_admin(&state).await?;
    let instance = &state.instance;
    let migrations = state.meta.migration_status().await?;
    let data_dir = instance.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || disk_usage(&data_dir))
        .await
        .map_err(|e| ApiError::Internal(format!("measuring the disk: {e}")))?;
    let clickhouse = match &state.clickhouse {
        Some(cluster) => cluster.system_status().await,
        None => Value::Null,
    };
    let now = warren_core::unix_millis();
    let latest = state.monitor.history().pop();
    Ok(Json(json!({
        "version": instance.version,
        "role": instance.role,
        "started_at": time_json(instance.started_at_ms.saturating_mul(1000)),
        "uptime_seconds": (now - instance.started_at_ms).max(0) / 1000,
        "data_dir": instance.data_dir.display().to_string(),
        "event_store": {
            "url": instance.event_store_url,
            "files": latest.as_ref().and_then(|p| p.store_files),
            "bytes": latest.as_ref().and_then(|p| p.store_bytes),
        },
        "internal_project": instance.internal_project,
        "config": instance.config,
        "migrations": migrations,
        "jobs": state.monitor.jobs().summaries(),
        "event_log": {
            "bytes": latest.as_ref().map(|p| p.log_bytes),
            "partitions": state.monitor.partitions(),
        },
        "disk": disk,
        "clickhouse": clickhouse,
    })))
}

/// Bytes under `dir`, following no links; unreadable entries count as 0.
fn size_of(dir: &FsPath) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The data dir's parts and the file system it is on.
fn disk_usage(data_dir: &FsPath) -> Value {
    let mut parts = serde_json::Map::new();
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let bytes = size_of(&entry.path());
            total += bytes;
            parts.insert(entry.file_name().to_string_lossy().into_owned(), json!(bytes));
        }
    }
    let filesystem = nix::sys::statvfs::statvfs(data_dir).ok().map(|fs| {
        // The libc types are u64 on 64-bit Linux and narrower elsewhere.
        fn wide(n: impl Into<u64>) -> u64 {
            n.into()
        }
        let block = wide(fs.fragment_size());
        json!({
            "total_bytes": wide(fs.blocks()).saturating_mul(block),
            "free_bytes": wide(fs.blocks_available()).saturating_mul(block),
        })
    });
    json!({ "data_dir_bytes": total, "parts": parts, "filesystem": filesystem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_adds_up_the_data_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("log/partitions/0")).expect("mkdir");
        std::fs::write(dir.path().join("log/partitions/0/0.log"), vec![0u8; 1000]).expect("write");
        std::fs::write(dir.path().join("meta.db"), vec![0u8; 24]).expect("write");
        let usage = disk_usage(dir.path());
        assert_eq!(usage["data_dir_bytes"], 1024);
        assert_eq!(usage["parts"]["log"], 1000);
        assert_eq!(usage["parts"]["meta.db"], 24);
        assert!(usage["filesystem"]["total_bytes"].as_u64().is_some_and(|t| t > 0));
    }
}
