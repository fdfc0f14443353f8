//! Committed consumer-group offsets: one small JSON file per group, replaced
//! atomically (write, fsync, rename, fsync the directory) on every commit.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::partition::sync_dir;
use crate::LogError;

type GroupOffsets = BTreeMap<u32, u64>;

#[derive(Debug)]
pub(super) struct OffsetStore {
    dir: PathBuf,
    groups: Mutex<BTreeMap<String, GroupOffsets>>,
    /// Groups that need every record from the log's first one on, whether
    /// or not they have committed yet: a consumer that has not committed
    /// (not started, or failing since its first batch) still needs it all.
    expected: Vec<String>,
}

pub(super) fn validate_group(group: &str) -> Result<(), LogError> {
    let valid = !group.is_empty()
        && group.len() <= 128
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !group.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(LogError::InvalidGroup(group.to_string()))
    }
}

impl OffsetStore {
    pub fn open(dir: &Path, expected: &[String]) -> Result<Self, LogError> {
        for group in expected {
            validate_group(group)?;
        }
        fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let mut groups = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let path = entry.map_err(|e| LogError::io("listing consumer groups", e))?.path();
            let Some(group) =
                path.file_name().and_then(|name| name.to_str()).and_then(|name| name.strip_suffix(".json"))
            else {
                continue;
            };
            let text = fs::read(&path).map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
            let offsets: GroupOffsets = serde_json::from_slice(&text).map_err(|e| {
                LogError::Config(format!("consumer offsets {} are unreadable: {e}", path.display()))
            })?;
            groups.insert(group.to_string(), offsets);
        }
        Ok(Self { dir: dir.to_path_buf(), groups: Mutex::new(groups), expected: expected.to_vec() })
    }

    pub fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        validate_group(group)?;
        let mut groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut offsets = groups.get(group).cloned().unwrap_or_default();
        offsets.insert(partition, offset);
        let path = self.dir.join(format!("{group}.json"));
        let staging = self.dir.join(format!(".{group}.json.new"));
        let text = serde_json::to_vec(&offsets).unwrap_or_default();
        fs::write(&staging, &text)
            .and_then(|()| fs::File::open(&staging)?.sync_all())
            .and_then(|()| fs::rename(&staging, &path))
            .map_err(|e| LogError::io(format!("committing offsets of group {group}"), e))?;
        sync_dir(&self.dir)?;
        groups.insert(group.to_string(), offsets);
        Ok(())
    }

    pub fn committed(&self, group: &str, partition: u32) -> Option<u64> {
        let groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        groups.get(group).and_then(|offsets| offsets.get(&partition).copied())
    }

    pub fn groups(&self) -> Vec<String> {
        let groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        groups.keys().cloned().collect()
    }

    /// The groups that committed anything and the expected ones.
    pub fn tracked_groups(&self) -> Vec<String> {
        let mut groups = self.groups();
        groups.extend(self.expected.iter().cloned());
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// The lowest offset any group still needs in `partition`; a group that
    /// never committed the partition, expected or not, needs all of it.
    pub fn lowest_needed(&self, partition: u32) -> Option<u64> {
        let groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let committed = groups.values().map(|offsets| offsets.get(&partition).copied().unwrap_or(0));
        let expected = self
            .expected
            .iter()
            .map(|group| groups.get(group).and_then(|offsets| offsets.get(&partition)).copied().unwrap_or(0));
        committed.chain(expected).min()
    }
}
