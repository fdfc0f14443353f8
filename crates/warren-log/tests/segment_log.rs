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
