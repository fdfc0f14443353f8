//! [`SegmentLog`]: the embedded event log, segment files on local disk.
//!
//! ```text
//! <dir>/log.json                 format version and partition count
//! <dir>/LOCK                     held while a process has the log open
//! <dir>/partitions/<p>/<base>.log segment files, base = first offset
//! <dir>/consumers/<group>.json   committed offsets
//! ```

mod format;
mod offsets;
mod partition;
mod retention;
mod writer;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Semaphore};
use warren_core::config::EventLogConfig;
use warren_core::metrics as names;
use warren_core::unix_millis;

use self::format::{decode_record, RecordError, HEADER_LEN};
use self::offsets::OffsetStore;
use self::partition::{open_partition, Partition};
use self::writer::{AppendRequest, Writer};
use crate::{AppendRecord, EventLog, LogError, LogRecord, RecordPosition, Watermarks};

pub use self::format::{FORMAT_VERSION, MAX_RECORD_BYTES};
pub use self::retention::{RetentionPolicy, RetentionReport};

/// Bytes read per call when reading records back.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// How a [`SegmentLog`] is opened.
#[derive(Debug, Clone)]
pub struct SegmentLogOptions {
    pub dir: PathBuf,
    /// Used when the log is created; an existing log keeps its own count.
    pub partitions: u32,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub max_pending_bytes: u64,
    pub append_timeout: Duration,
    /// Keep every intact record of a damaged segment instead of refusing to open.
    pub repair: bool,
    /// Consumer groups that need every record from the first on, before
    /// their first commit too: retention waits for them (unless told to
    /// ignore consumers) and their lag is reported from the start.
    pub consumers: Vec<String>,
}

impl SegmentLogOptions {
    /// The defaults of [`EventLogConfig`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::from_config(dir, &EventLogConfig::default())
    }

    pub fn from_config(dir: impl Into<PathBuf>, config: &EventLogConfig) -> Self {
        Self {
            dir: dir.into(),
            partitions: config.partitions,
            segment_bytes: config.segment_bytes,
            segment_age: Duration::from_secs(config.segment_age_secs),
            max_pending_bytes: config.max_pending_bytes,
            append_timeout: Duration::from_millis(config.append_timeout_ms),
            repair: false,
            consumers: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LogMeta {
    format_version: u32,
    partitions: u32,
    /// Names this log's history of records: a log made anew (by a restore,
    /// say) numbers records from offsets another log used, and archives
    /// of the two must never be mistaken for one another. Logs made before
    /// it existed get one when next opened.
    #[serde(default)]
    id: Option<String>,
}

/// What a log's directory says of it, read without opening the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    pub partitions: u32,
    /// `None` for a log made by an older build and not opened since.
    pub id: Option<String>,
}

/// The embedded [`EventLog`].
pub struct SegmentLog {
    partitions: Vec<Arc<Partition>>,
    queue: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pending: Arc<Semaphore>,
    max_pending_bytes: u64,
    append_timeout: Duration,
    offsets: Arc<OffsetStore>,
    /// Held for the life of the log so a second process cannot open it.
    /// See [`LogInfo::id`].
    id: String,
    _lock: File,
}

impl SegmentLog {
    /// Opens (or creates) the log, recovering every partition. Blocking.
    pub fn open(options: SegmentLogOptions) -> Result<Self, LogError> {
        let dir = &options.dir;
        fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let lock = lock_dir(dir)?;
        let (partitions, id) = read_or_create_meta(dir, options.partitions)?;
        let now = unix_millis();
        let mut shared = Vec::with_capacity(partitions as usize);
        let mut active = Vec::with_capacity(partitions as usize);
        for id in 0..partitions {
            let partition_dir = dir.join("partitions").join(id.to_string());
            let (partition, segment) = open_partition(&partition_dir, id, options.repair, now)?;
            shared.push(Arc::new(partition));
            active.push(segment);
        }
        let offsets = Arc::new(OffsetStore::open(&dir.join("consumers"), &options.consumers)?);
        let writer = Writer {
            partitions: shared.clone(),
            active,
            segment_bytes: options.segment_bytes,
            segment_age: options.segment_age,
            buffers: vec![Vec::new(); partitions as usize],
            broken: vec![None; partitions as usize],
        };
        let (queue, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| LogError::io("starting the event log writer", e))?;
        let max_pending_bytes = options.max_pending_bytes.clamp(1, u32::MAX as u64);
        tracing::info!(dir = %dir.display(), partitions, "event log open");
        Ok(Self {
            partitions: shared,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(handle)),
            pending: Arc::new(Semaphore::new(max_pending_bytes as usize)),
            max_pending_bytes,
            append_timeout: options.append_timeout,
            offsets,
            id,
            _lock: lock,
        })
    }

    /// The id of this log's history of records (see [`LogInfo`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What `dir`'s `log.json` says, without opening the log (which
    /// another process may hold); `None` when there is no log there.
    pub fn info_in(dir: &Path) -> Result<Option<LogInfo>, LogError> {
        let path = dir.join("log.json");
        match fs::read(&path) {
            Ok(bytes) => {
                let meta: LogMeta = serde_json::from_slice(&bytes)
                    .map_err(|e| LogError::Config(format!("{} is unreadable: {e}", path.display())))?;
                Ok(Some(LogInfo { partitions: meta.partitions, id: meta.id }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Creates, in an empty directory, a log of `starts.len()` partitions
    /// whose next offsets are `starts`: a deployment restored from a backup
    /// goes on numbering its records where the stores it got back stopped,
    /// so its ingest (which resumes at those offsets) reads every new one.
    /// Blocking.
    pub fn create_at(dir: &Path, starts: &[u64]) -> Result<(), LogError> {
        fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let _lock = lock_dir(dir)?;
        if dir.join("log.json").exists() {
            return Err(LogError::Config(format!("{} already holds an event log", dir.display())));
        }
        // Left by a creation that was cut short: not a log yet.
        let partitions = dir.join("partitions");
        if partitions.exists() {
            fs::remove_dir_all(&partitions)
                .map_err(|e| LogError::io(format!("removing {}", partitions.display()), e))?;
        }
        let now = unix_millis();
        for (id, start) in (0u32..).zip(starts) {
            let partition_dir = dir.join("partitions").join(id.to_string());
            fs::create_dir_all(&partition_dir)
                .map_err(|e| LogError::io(format!("creating {}", partition_dir.display()), e))?;
            partition::create_segment(&partition_dir, id, *start, now)?;
        }
        // Last: a log without it is not a log yet, and is created again.
        read_or_create_meta(dir, starts.len() as u32)?;
        Ok(())
    }

    fn partition(&self, partition: u32) -> Result<&Arc<Partition>, LogError> {
        self.partitions
            .get(partition as usize)
            .ok_or(LogError::UnknownPartition { partition, partitions: self.partitions.len() as u32 })
    }

    fn record_gauges(&self) {
        let groups = self.offsets.tracked_groups();
        for partition in &self.partitions {
            let label = partition.id.to_string();
            let (bytes, count, end) = {
                let segments = partition.segments();
                let bytes: u64 = segments.iter().map(|segment| segment.len).sum();
                let end = segments.last().map(|segment| segment.next_offset).unwrap_or(0);
                (bytes, segments.len(), end)
            };
            metrics::gauge!(names::LOG_PARTITION_BYTES, "partition" => label.clone()).set(bytes as f64);
            metrics::gauge!(names::LOG_PARTITION_SEGMENTS, "partition" => label.clone()).set(count as f64);
            for group in &groups {
                let committed = self.offsets.committed(group, partition.id).unwrap_or(0);
                metrics::gauge!(
                    names::LOG_CONSUMER_LAG,
                    "group" => group.clone(),
                    "partition" => label.clone()
                )
                .set(end.saturating_sub(committed) as f64);
            }
        }
    }
}

impl SegmentLog {
    /// Stops accepting appends and lets the writer finish what is queued;
    /// returns the writer to join, if it was still running.
    fn stop_writer(&self) -> Option<JoinHandle<()>> {
        drop(self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        self.pending.close();
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl Drop for SegmentLog {
    /// Waits for the writer before the directory lock is released, so no
    /// other process can open the log while queued writes still land.
    fn drop(&mut self) {
        if let Some(handle) = self.stop_writer() {
            let _ = handle.join();
        }
    }
}

/// How long a held lock is waited for. A process forked by this one (any
/// `Command`) holds a copy of the lock until it execs, so a log closed
/// and opened again at once can find it held for a moment; another
/// process using the log holds it for good.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = File::create(&path).map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(LogError::Config(format!(
                    "event log {} is in use by another process",
                    dir.display()
                )))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(LogError::io(format!("locking {}", path.display()), e))
            }
        }
    }
}

/// The log's partition count and id, from `log.json`, which is written
/// (with a new id) when missing and given an id when it has none.
fn read_or_create_meta(dir: &Path, partitions: u32) -> Result<(u32, String), LogError> {
    let path = dir.join("log.json");
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: LogMeta = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Config(format!("{} is unreadable: {e}", path.display())))?;
            if meta.partitions == 0 {
                return Err(LogError::Config(format!("{} says the log has no partitions", path.display())));
            }
            if meta.format_version != format::FORMAT_VERSION {
                return Err(LogError::Config(format!(
                    "event log format version {} is not supported by this build (version {})",
                    meta.format_version,
                    format::FORMAT_VERSION
                )));
            }
            if meta.partitions != partitions {
                tracing::warn!(
                    configured = partitions,
                    existing = meta.partitions,
                    "the event log keeps the partition count it was created with"
                );
            }
            match meta.id {
                Some(id) => Ok((meta.partitions, id)),
                None => {
                    let (id, partitions) = (new_log_id(), meta.partitions);
                    write_meta(dir, &LogMeta { id: Some(id.clone()), ..meta })?;
                    Ok((partitions, id))
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if partitions == 0 {
                return Err(LogError::Config("an event log needs at least one partition".into()));
            }
            let id = new_log_id();
            write_meta(
                dir,
                &LogMeta { format_version: format::FORMAT_VERSION, partitions, id: Some(id.clone()) },
            )?;
            Ok((partitions, id))
        }
        Err(e) => Err(LogError::io(format!("reading {}", path.display()), e)),
    }
}

fn new_log_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Writes `log.json` whole or not at all.
fn write_meta(dir: &Path, meta: &LogMeta) -> Result<(), LogError> {
    let path = dir.join("log.json");
    let staging = dir.join("log.json.new");
    fs::write(&staging, serde_json::to_vec_pretty(meta).unwrap_or_default())
        .and_then(|()| File::open(&staging)?.sync_all())
        .and_then(|()| fs::rename(&staging, &path))
        .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
    partition::sync_dir(dir)
}

#[async_trait]
impl EventLog for SegmentLog {
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn partition_for(&self, key: &[u8]) -> u32 {
        // CRC32C is stable across versions and platforms: a key's partition
        // never changes for a log with the same partition count.
        crc32c::crc32c(key) % self.partitions.len() as u32
    }

    fn report_metrics(&self) {
        self.record_gauges();
    }

    async fn append(&self, records: Vec<AppendRecord>) -> Result<Vec<RecordPosition>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut encoded_bytes = 0usize;
        let mut placed = Vec::with_capacity(records.len());
        for record in records {
            let size = format::encoded_len(&record.key, &record.value);
            if size > MAX_RECORD_BYTES {
                return Err(LogError::RecordTooLarge { bytes: size, max: MAX_RECORD_BYTES });
            }
            encoded_bytes += size;
            placed.push((self.partition_for(&record.key), record));
        }
        // A request larger than the whole budget takes all of it and waits
        // for the log to drain, instead of never fitting.
        let wanted = (encoded_bytes as u64).min(self.max_pending_bytes) as u32;
        let permit =
            match tokio::time::timeout(self.append_timeout, self.pending.clone().acquire_many_owned(wanted))
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => {
                    metrics::counter!(names::LOG_APPEND_ERRORS, "cause" => "overloaded").increment(1);
                    return Err(LogError::Overloaded {
                        bytes: encoded_bytes as u64,
                        waited_ms: self.append_timeout.as_millis() as u64,
                    });
                }
            };
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest { records: placed, encoded_bytes, reply, _permit: permit };
        {
            let queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let sent = queue.as_ref().map(|queue| queue.send(request).is_ok()).unwrap_or(false);
            if !sent {
                return Err(LogError::Closed);
            }
        }
        let result = answer.await.map_err(|_| LogError::Closed)?;
        match &result {
            Ok(_) => metrics::histogram!(names::LOG_APPEND_SECONDS).record(started.elapsed().as_secs_f64()),
            Err(LogError::Full(_)) => {
                metrics::counter!(names::LOG_APPEND_ERRORS, "cause" => "full").increment(1);
            }
            Err(_) => metrics::counter!(names::LOG_APPEND_ERRORS, "cause" => "io").increment(1),
        }
        result
    }

    async fn read(&self, partition: u32, from: u64, max_records: usize) -> Result<Vec<LogRecord>, LogError> {
        let shared = self.partition(partition)?.clone();
        tokio::task::spawn_blocking(move || read_records(&shared, from, max_records))
            .await
            .map_err(|e| LogError::io("reading the event log", std::io::Error::other(e)))?
    }

    async fn watermarks(&self, partition: u32) -> Result<Watermarks, LogError> {
        let segments = self.partition(partition)?.segments();
        Ok(watermarks(&segments))
    }

    async fn offset_for_time(&self, partition: u32, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        let shared = self.partition(partition)?.clone();
        tokio::task::spawn_blocking(move || find_time(&shared, timestamp_ms))
            .await
            .map_err(|e| LogError::io("searching the event log", std::io::Error::other(e)))?
    }

    async fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let marks = watermarks(&self.partition(partition)?.segments());
        if offset > marks.end {
            return Err(LogError::OffsetOutOfRange {
                partition,
                requested: offset,
                start: marks.start,
                end: marks.end,
            });
        }
        let offsets = self.offsets.clone();
        let group = group.to_string();
        tokio::task::spawn_blocking(move || offsets.commit(&group, partition, offset))
            .await
            .map_err(|e| LogError::io("committing offsets", std::io::Error::other(e)))?
    }

    async fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        offsets::validate_group(group)?;
        self.partition(partition)?;
        Ok(self.offsets.committed(group, partition))
    }

    async fn consumer_groups(&self) -> Result<Vec<String>, LogError> {
        Ok(self.offsets.groups())
    }

    async fn close(&self) -> Result<(), LogError> {
        let handle = self.stop_writer();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| LogError::io("stopping the event log writer", std::io::Error::other(e)))?
                .map_err(|_| {
                    LogError::io("stopping the event log writer", std::io::Error::other("writer panicked"))
                })?;
        }
        Ok(())
    }
}

fn watermarks(segments: &[partition::Segment]) -> Watermarks {
    let start = segments.first().map(|segment| segment.base_offset).unwrap_or(0);
    let end = segments.last().map(|segment| segment.next_offset).unwrap_or(0);
    Watermarks { start, end }
}

/// A segment's durable bytes as of one moment, read without holding locks.
struct SegmentView {
    file: Arc<File>,
    path: PathBuf,
    pos: u64,
    len: u64,
}

fn read_records(partition: &Partition, from: u64, max_records: usize) -> Result<Vec<LogRecord>, LogError> {
    let mut out = Vec::new();
    let mut next = from;
    while out.len() < max_records {
        let view = {
            let segments = partition.segments();
            let marks = watermarks(&segments);
            if next < marks.start {
                return Err(LogError::OffsetOutOfRange {
                    partition: partition.id,
                    requested: next,
                    start: marks.start,
                    end: marks.end,
                });
            }
            if next >= marks.end {
                break;
            }
            let at = segments.partition_point(|segment| segment.base_offset <= next);
            let Some(segment) = at.checked_sub(1).map(|i| &segments[i]) else {
                break;
            };
            if next >= segment.next_offset {
                // In a gap between segments: continue at the next one.
                match following_segment(&segments, next) {
                    Some(base) => {
                        next = base;
                        continue;
                    }
                    None => break,
                }
            }
            SegmentView {
                file: segment.reader.clone(),
                path: segment.path.clone(),
                pos: segment.index.position_for(next),
                len: segment.len,
            }
        };
        let before = out.len();
        scan_view(&view, |offset, timestamp_ms, key, value| {
            if offset >= next && out.len() < max_records {
                out.push(LogRecord {
                    partition: partition.id,
                    offset,
                    timestamp_ms,
                    key: key.to_vec(),
                    value: value.to_vec(),
                });
            }
            out.len() < max_records
        })?;
        match out.last() {
            Some(last) if out.len() > before => next = last.offset + 1,
            // Nothing at or after `next` in this segment: move past it.
            _ => match following_segment(&partition.segments(), next) {
                Some(base) => next = base,
                None => break,
            },
        }
    }
    Ok(out)
}

/// The first offset of the segment after the one that would hold `offset`.
fn following_segment(segments: &[partition::Segment], offset: u64) -> Option<u64> {
    let at = segments.partition_point(|segment| segment.base_offset <= offset);
    segments.get(at).map(|segment| segment.base_offset)
}

/// Calls `visit` for each record of `view` from its position until it
/// returns false or the durable bytes end.
fn scan_view(
    view: &SegmentView,
    mut visit: impl FnMut(u64, i64, &[u8], &[u8]) -> bool,
) -> Result<(), LogError> {
    let corrupt =
        |position: u64, reason: String| LogError::Corrupt { path: view.path.clone(), position, reason };
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut pos = view.pos.max(HEADER_LEN);
    while pos < view.len {
        let want = ((view.len - pos) as usize).min(buffer.len());
        view.file
            .read_exact_at(&mut buffer[..want], pos)
            .map_err(|e| LogError::io(format!("reading {}", view.path.display()), e))?;
        let mut used = 0;
        loop {
            match decode_record(&buffer[used..want]) {
                Ok((record, size)) => {
                    used += size;
                    if !visit(record.offset, record.timestamp_ms, record.key, record.value) {
                        return Ok(());
                    }
                }
                Err(RecordError::Incomplete) if used > 0 => break,
                Err(RecordError::Incomplete) => {
                    // One record larger than the buffer: grow and retry.
                    let needed = u32::from_le_bytes(
                        buffer[..4].try_into().map_err(|_| corrupt(pos, "short read".into()))?,
                    ) as usize
                        + format::RECORD_PREFIX_LEN;
                    if needed <= buffer.len() || pos + needed as u64 > view.len {
                        return Err(corrupt(pos, "record runs past the durable end".into()));
                    }
                    buffer.resize(needed, 0);
                    break;
                }
                Err(RecordError::Invalid(reason)) => return Err(corrupt(pos + used as u64, reason)),
            }
            if used == want {
                break;
            }
        }
        pos += used as u64;
    }
    Ok(())
}

fn find_time(partition: &Partition, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
    let view = {
        let segments = partition.segments();
        let found = segments
            .iter()
            .find_map(|segment| segment.index.position_for_time(timestamp_ms).map(|pos| (segment, pos)));
        match found {
            Some((segment, pos)) => SegmentView {
                file: segment.reader.clone(),
                path: segment.path.clone(),
                pos,
                len: segment.len,
            },
            None => return Ok(None),
        }
    };
    let mut found = None;
    scan_view(&view, |offset, record_ms, _, _| {
        if record_ms >= timestamp_ms {
            found = Some(offset);
            return false;
        }
        true
    })?;
    Ok(found)
}
