//! The segment log against the shared conformance suite, plus what only a
//! segment log has: segment rolls, retention, repair and lock-out.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;
use warren_log::conformance::LogFactory;
use warren_log::{AppendRecord, EventLog, LogError, RetentionPolicy, SegmentLog, SegmentLogOptions};

struct SegmentFactory {
    dir: TempDir,
}

impl SegmentFactory {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn options(&self, partitions: u32) -> SegmentLogOptions {
        SegmentLogOptions { partitions, ..SegmentLogOptions::new(self.dir.path().join("log")) }
    }
}

async fn open(options: SegmentLogOptions) -> Result<SegmentLog, LogError> {
    tokio::task::spawn_blocking(move || SegmentLog::open(options)).await.expect("open task")
}

fn active_segment(dir: &Path, partition: u32) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("partitions").join(partition.to_string()))
        .expect("partition dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[async_trait]
impl LogFactory for SegmentFactory {
    type Log = SegmentLog;

    async fn create(&self, partitions: u32) -> SegmentLog {
        open(self.options(partitions)).await.expect("open")
    }

    async fn reopen(&self, log: SegmentLog) -> SegmentLog {
        let partitions = log.partitions();
        log.close().await.expect("close");
        drop(log);
        self.create(partitions).await
    }

    async fn reopen_after_torn_write(&self, log: SegmentLog) -> SegmentLog {
        let partitions = log.partitions();
        drop(log);
        // Half a record: a length prefix promising more than follows.
        let path = active_segment(&self.dir.path().join("log"), 0);
        let mut file = OpenOptions::new().append(true).open(path).expect("segment");
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).expect("torn bytes");
        self.create(partitions).await
    }
}

warren_log::event_log_conformance!(SegmentFactory::new());

fn record(i: u64) -> AppendRecord {
    AppendRecord { key: b"k".to_vec(), value: vec![b'x'; 1000], timestamp_ms: i as i64 }
}

#[tokio::test]
async fn rolls_segments_by_size_and_reads_across_them() {
    let factory = SegmentFactory::new();
    let options = SegmentLogOptions { segment_bytes: 10_000, ..factory.options(1) };
    let log = open(options.clone()).await.expect("open");
    for i in 0..100 {
        log.append(vec![record(i)]).await.expect("append");
    }
    let segments = std::fs::read_dir(options.dir.join("partitions/0")).expect("dir").count();
    assert!(segments >= 9, "100 KB in 10 KB segments made {segments} files");
    let all = log.read(0, 0, 1000).await.expect("read");
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    log.close().await.expect("close");
    drop(log);
    let log = open(options).await.expect("reopen");
    assert_eq!(log.read(0, 37, 1000).await.expect("read").len(), 63);
    assert_eq!(log.offset_for_time(0, 55).await.expect("time"), Some(55));
    log.close().await.expect("close");
}

#[tokio::test]
async fn retention_respects_consumers_unless_told_otherwise() {
    let factory = SegmentFactory::new();
    let options = SegmentLogOptions { segment_bytes: 10_000, ..factory.options(1) };
    let log = open(options).await.expect("open");
    for i in 0..100 {
        log.append(vec![record(i)]).await.expect("append");
    }
    log.commit("ingest", 0, 30).await.expect("commit");
    let policy = RetentionPolicy { max_bytes: Some(20_000), ..RetentionPolicy::default() };
    let report = log.apply_retention(&policy, 0).expect("retention");
    assert!(report.segments_deleted >= 2 && report.segments_held == 1, "{report:?}");
    let start = log.watermarks(0).await.expect("marks").start;
    assert!(start > 0 && start <= 30, "kept what the group needs: start {start}");
    assert!(matches!(log.read(0, 0, 1).await, Err(LogError::OffsetOutOfRange { .. })));

    let forced = RetentionPolicy { ignore_consumers: true, ..policy };
    log.apply_retention(&forced, 0).expect("retention");
    let marks = log.watermarks(0).await.expect("marks");
    assert!(marks.start > 30 && marks.end == 100, "{marks:?}");

    let by_age = RetentionPolicy {
        max_age: Some(Duration::from_millis(10)),
        ignore_consumers: true,
        ..Default::default()
    };
    log.apply_retention(&by_age, 10_000).expect("retention");
    let marks = log.watermarks(0).await.expect("marks");
    assert_eq!(log.read(0, marks.start, 1000).await.expect("read").last().map(|r| r.offset), Some(99));
    log.close().await.expect("close");
}

#[tokio::test]
async fn corruption_mid_segment_refuses_to_open_and_repair_keeps_intact_records() {
    let factory = SegmentFactory::new();
    let options = factory.options(1);
    let log = open(options.clone()).await.expect("open");
    for i in 0..10 {
        log.append(vec![record(i)]).await.expect("append");
    }
    log.close().await.expect("close");
    drop(log);
    let path = active_segment(&options.dir, 0);
    let mut bytes = std::fs::read(&path).expect("segment");
    let fifth_record = 40 + 4 * (8 + 20 + 1 + 1000);
    bytes[fifth_record + 50] ^= 0xff;
    std::fs::write(&path, bytes).expect("damage");

    let error = open(options.clone()).await.err().expect("refuses to open");
    let message = error.to_string();
    assert!(message.contains("corrupt") && message.contains("--repair"), "{message}");

    let log = open(SegmentLogOptions { repair: true, ..options }).await.expect("repair");
    let offsets: Vec<u64> = log.read(0, 0, 100).await.expect("read").iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    let next = log.append(vec![record(10)]).await.expect("append")[0];
    assert_eq!(next.offset, 10);
    log.close().await.expect("close");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_log() {
    let factory = SegmentFactory::new();
    let log = open(factory.options(1)).await.expect("open");
    let second = open(factory.options(1)).await;
    assert!(matches!(second, Err(LogError::Config(message)) if message.contains("in use")));
    log.close().await.expect("close");
}

#[tokio::test]
async fn overload_fails_appends_after_the_deadline_instead_of_buffering() {
    let factory = SegmentFactory::new();
    let options = SegmentLogOptions {
        max_pending_bytes: 1,
        append_timeout: Duration::from_millis(1),
        ..factory.options(1)
    };
    let log = std::sync::Arc::new(open(options).await.expect("open"));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { log.append(vec![record(i)]).await }));
    }
    let mut overloaded = 0;
    let mut stored = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => stored += 1,
            Err(LogError::Overloaded { .. }) => overloaded += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(overloaded > 0, "a one-byte budget must turn some appends away");
    assert_eq!(log.watermarks(0).await.expect("marks").end, stored);
    log.close().await.expect("close");
}

#[tokio::test]
async fn opening_after_a_cut_at_every_byte_keeps_exactly_the_complete_records() {
    let factory = SegmentFactory::new();
    let options = factory.options(1);
    let log = open(options.clone()).await.expect("open");
    for i in 0..6u8 {
        log.append(vec![AppendRecord { key: vec![i], value: vec![i; 3 + i as usize], timestamp_ms: 1 }])
            .await
            .expect("append");
    }
    log.close().await.expect("close");
    drop(log);
    let path = active_segment(&options.dir, 0);
    let whole = std::fs::read(&path).expect("segment");
    // Where each record ends, from the sizes the format gives them.
    let mut ends = Vec::new();
    let mut end = 40;
    for i in 0..6usize {
        end += 8 + 20 + 1 + 3 + i;
        ends.push(end);
    }
    assert_eq!(*ends.last().expect("six"), whole.len());
    for cut in 40..=whole.len() {
        std::fs::write(&path, &whole[..cut]).expect("cut");
        let log = open(options.clone()).await.expect("a torn tail never stops the start");
        let complete = ends.iter().filter(|end| **end <= cut).count();
        let records = log.read(0, 0, 100).await.expect("read");
        assert_eq!(records.len(), complete, "cut at {cut}");
        assert!(records.iter().enumerate().all(|(i, r)| r.value == vec![i as u8; 3 + i]));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len() as usize,
            ends[..complete].last().copied().unwrap_or(40)
        );
        log.close().await.expect("close");
    }
}

#[tokio::test]
async fn rolls_segments_by_age() {
    let factory = SegmentFactory::new();
    // Every segment is "old" at once: each append after the first seals the
    // segment before it.
    let options = SegmentLogOptions { segment_age: Duration::ZERO, ..factory.options(1) };
    let log = open(options.clone()).await.expect("open");
    for i in 0..3 {
        log.append(vec![record(i)]).await.expect("append");
    }
    // Count segments holding records: the idle writer may also have opened
    // an empty one after sealing the last.
    let segments = std::fs::read_dir(options.dir.join("partitions/0"))
        .expect("dir")
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.metadata().is_ok_and(|m| m.len() > 40)))
        .count();
    assert_eq!(segments, 3);
    assert_eq!(log.read(0, 0, 10).await.expect("read").len(), 3);
    log.close().await.expect("close");
}

#[tokio::test]
async fn retention_keeps_what_an_expected_group_has_not_committed_before_its_first_commit() {
    let factory = SegmentFactory::new();
    let options =
        SegmentLogOptions { segment_bytes: 10_000, consumers: vec!["ingest".into()], ..factory.options(1) };
    let log = open(options.clone()).await.expect("open");
    for i in 0..100 {
        log.append(vec![record(i)]).await.expect("append");
    }
    let policy = RetentionPolicy { max_bytes: Some(20_000), ..RetentionPolicy::default() };
    let report = log.apply_retention(&policy, 0).expect("retention");
    assert_eq!((report.segments_deleted, report.segments_held), (0, 1), "{report:?}");
    assert_eq!(log.watermarks(0).await.expect("marks").start, 0, "ingest never committed: all kept");
    log.close().await.expect("close");
    drop(log);

    // Still so after a restart: the group is expected, not remembered.
    let log = open(options).await.expect("reopen");
    let report = log.apply_retention(&policy, 0).expect("retention");
    assert_eq!(report.segments_deleted, 0, "{report:?}");
    log.commit("ingest", 0, 30).await.expect("commit");
    log.apply_retention(&policy, 0).expect("retention");
    let start = log.watermarks(0).await.expect("marks").start;
    assert!(start > 0 && start <= 30, "deleted only what the first commit covers: start {start}");
    log.close().await.expect("close");
}

#[tokio::test]
async fn retention_told_to_ignore_consumers_deletes_what_they_need_and_counts_it() {
    let factory = SegmentFactory::new();
    let options =
        SegmentLogOptions { segment_bytes: 10_000, consumers: vec!["ingest".into()], ..factory.options(1) };
    let log = open(options).await.expect("open");
    for i in 0..100 {
        log.append(vec![record(i)]).await.expect("append");
    }
    let policy =
        RetentionPolicy { max_bytes: Some(20_000), ignore_consumers: true, ..RetentionPolicy::default() };
    let report = log.apply_retention(&policy, 0).expect("retention");
    let start = log.watermarks(0).await.expect("marks").start;
    assert!(report.segments_deleted >= 2 && start > 0, "{report:?}");
    assert_eq!(report.records_unconsumed, start, "every deleted record was one ingest still needed");
    assert!(matches!(
        log.read(0, 0, 1).await,
        Err(LogError::OffsetOutOfRange { requested: 0, start: first, .. }) if first == start
    ));
    log.close().await.expect("close");
}

/// A tmpfs of `bytes` mounted on a fresh directory for as long as it lives;
/// `None` (after a loud notice) where mounting is not allowed, unless CI
/// requires it.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Some(Self { dir });
        }
        let required = ["CI", "TESTKIT_REQUIRE_PEERS"]
            .iter()
            .any(|name| std::env::var(name).is_ok_and(|v| v == "true" || v == "1"));
        assert!(!required, "mounting a tmpfs needs root, which CI has");
        eprintln!("\n!!! SKIPPED: mounting a tmpfs needs root; CI would fail here !!!\n");
        None
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy, so an early panic with files still open cannot leave it mounted.
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A key whose records go to `partition` of `log`.
fn key_for(log: &SegmentLog, partition: u32) -> Vec<u8> {
    (0u32..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|key| log.partition_for(key) == partition)
        .expect("some key lands there")
}

#[tokio::test]
async fn an_append_that_fails_on_one_partition_leaves_nothing_in_the_others() {
    let Some(disk) = SmallDisk::mount(1024 * 1024) else { return };
    let options = SegmentLogOptions { partitions: 2, ..SegmentLogOptions::new(disk.dir.path().join("log")) };
    let log = open(options.clone()).await.expect("open");
    let (first, second) = (key_for(&log, 0), key_for(&log, 1));
    let small = |key: &[u8], i: u8| AppendRecord { key: key.to_vec(), value: vec![i; 100], timestamp_ms: 1 };
    log.append(vec![small(&first, 0), small(&second, 0)]).await.expect("append");
    let segment = active_segment(&options.dir, 0);
    let length = std::fs::metadata(&segment).expect("segment").len();

    let filler = disk.fill();
    // Partition 0 takes a small record into the page it already has; the
    // large one for partition 1 needs pages the disk no longer has.
    let large = AppendRecord { key: second.clone(), value: vec![9; 64 * 1024], timestamp_ms: 1 };
    let refused = log.append(vec![small(&first, 1), large.clone()]).await;
    assert!(matches!(refused, Err(LogError::Full(_))), "{refused:?}");
    assert_eq!(log.watermarks(0).await.expect("marks").end, 1, "nothing of the request is visible");
    assert_eq!(std::fs::metadata(&segment).expect("segment").len(), length, "nor left on disk");
    // The partitions are not broken: what fits is taken.
    log.append(vec![small(&first, 2)]).await.expect("a small append still fits");

    std::fs::remove_file(filler).expect("free the disk");
    log.append(vec![small(&first, 1), large]).await.expect("the retry, once there is room");
    log.close().await.expect("close");
    drop(log);
    let log = open(options).await.expect("reopen");
    let values = |records: Vec<warren_log::LogRecord>| records.iter().map(|r| r.value[0]).collect::<Vec<_>>();
    assert_eq!(values(log.read(0, 0, 10).await.expect("read")), [0, 2, 1], "each record once");
    assert_eq!(values(log.read(1, 0, 10).await.expect("read")), [0, 9]);
    log.close().await.expect("close");
}

#[tokio::test]
async fn a_log_created_at_given_offsets_numbers_its_records_from_them() {
    let factory = SegmentFactory::new();
    let dir = factory.dir.path().join("log");
    let starts = [7, 1_000];
    SegmentLog::create_at(&dir, &starts).expect("create");
    assert!(SegmentLog::create_at(&dir, &starts).is_err(), "a second creation is refused");
    let log = open(factory.options(5)).await.expect("open");
    assert_eq!(log.partitions(), 2, "the partitions it was created with");
    for (partition, start) in (0u32..).zip(starts) {
        let marks = log.watermarks(partition).await.expect("watermarks");
        assert_eq!((marks.start, marks.end), (start, start));
    }
    let positions = log.append((0..20).map(record).collect()).await.expect("append");
    for position in positions {
        assert!(position.offset >= starts[position.partition as usize], "{position:?}");
    }
    // A new history of records: another id than any other log's, kept
    // across reopening.
    let id = log.id().to_string();
    log.close().await.expect("close");
    drop(log);
    let info = SegmentLog::info_in(&dir).expect("info").expect("a log");
    assert_eq!((info.partitions, info.id.as_deref()), (2, Some(id.as_str())));
    let reopened = open(factory.options(5)).await.expect("open");
    assert_eq!(reopened.id(), id, "the id stays with the log");
    reopened.close().await.expect("close");
    let other = SegmentFactory::new();
    let other_dir = other.dir.path().join("log");
    SegmentLog::create_at(&other_dir, &starts).expect("create");
    assert_ne!(
        SegmentLog::info_in(&other_dir).expect("info").expect("a log").id,
        Some(id),
        "each log its own id"
    );
}
