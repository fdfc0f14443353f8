//! The conformance suite every [`EventLog`] adapter must pass.
//!
//! An adapter's tests implement [`LogFactory`] and invoke
//! [`event_log_conformance!`](crate::event_log_conformance), which expands to
//! one `#[tokio::test]` per property: ordering per partition, durability
//! across restart, consumer offsets, concurrent producers, recovery from a
//! torn write, time lookup, and read bounds.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use crate::{AppendRecord, EventLog, LogError, LogRecord};

/// Opens logs of one adapter on storage the factory owns.
#[async_trait]
pub trait LogFactory: Send + Sync {
    type Log: EventLog;

    /// A new, empty log with `partitions` partitions.
    async fn create(&self, partitions: u32) -> Self::Log;

    /// Closes `log` and opens the same storage again.
    async fn reopen(&self, log: Self::Log) -> Self::Log;

    /// Stops `log` as a crash during a write would (leaving whatever partial
    /// bytes that adapter can be left with), then opens it again.
    async fn reopen_after_torn_write(&self, log: Self::Log) -> Self::Log;
}

/// Expands to the whole suite for a factory expression.
#[macro_export]
macro_rules! event_log_conformance {
    ($factory:expr) => {
        $crate::event_log_conformance!(@tests $factory;
            ordering_per_partition,
            durable_across_restart,
            consumer_offsets,
            concurrent_producers,
            torn_write_recovery,
            time_lookup,
            read_bounds
        );
    };
    (@tests $factory:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory;
                $crate::conformance::$name(&factory).await;
            }
        )*
    };
}

fn record(key: &str, value: String, timestamp_ms: i64) -> AppendRecord {
    AppendRecord { key: key.as_bytes().to_vec(), value: value.into_bytes(), timestamp_ms }
}

async fn read_all(log: &impl EventLog, partition: u32) -> Vec<LogRecord> {
    crate::read_partition(log, partition).await.expect("read partition")
}

async fn read_everything(log: &impl EventLog) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for partition in 0..log.partitions() {
        out.extend(read_all(log, partition).await);
    }
    out
}

/// Values of each key in the order the log holds them.
fn values_by_key(records: &[LogRecord]) -> BTreeMap<Vec<u8>, Vec<String>> {
    let mut by_key: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for record in records {
        by_key
            .entry(record.key.clone())
            .or_default()
            .push(String::from_utf8_lossy(&record.value).into_owned());
    }
    by_key
}

pub async fn ordering_per_partition<F: LogFactory>(factory: &F) {
    let log = factory.create(4).await;
    let mut expected: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for round in 0..20 {
        let batch: Vec<AppendRecord> = (0..10)
            .map(|k| {
                let key = format!("key-{k}");
                let value = format!("{key}/{round}");
                expected.entry(key.clone().into_bytes()).or_default().push(value.clone());
                record(&key, value, 1_000 + round)
            })
            .collect();
        let positions = log.append(batch.clone()).await.expect("append");
        assert_eq!(positions.len(), batch.len());
        for (position, appended) in positions.iter().zip(&batch) {
            assert_eq!(position.partition, log.partition_for(&appended.key));
            let read = log.read(position.partition, position.offset, 1).await.expect("read");
            assert_eq!(read[0].offset, position.offset);
            assert_eq!(read[0].value, appended.value, "the position names the record");
        }
    }
    for partition in 0..log.partitions() {
        let records = read_all(&log, partition).await;
        assert!(records.windows(2).all(|pair| pair[0].offset < pair[1].offset));
        assert!(records.iter().all(|r| log.partition_for(&r.key) == partition));
    }
    assert_eq!(values_by_key(&read_everything(&log).await), expected);
    log.close().await.expect("close");
}

pub async fn durable_across_restart<F: LogFactory>(factory: &F) {
    let log = factory.create(2).await;
    for i in 0..50 {
        log.append(vec![record(&format!("k{}", i % 7), format!("v{i}"), i)]).await.expect("append");
    }
    let before = read_everything(&log).await;
    assert_eq!(before.len(), 50);
    let log = factory.reopen(log).await;
    assert_eq!(read_everything(&log).await, before);
    let position = log.append(vec![record("k1", "after".into(), 99)]).await.expect("append")[0];
    let tail = log.read(position.partition, position.offset, 10).await.expect("read");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].value, b"after");
    log.close().await.expect("close");
}

pub async fn consumer_offsets<F: LogFactory>(factory: &F) {
    let log = factory.create(2).await;
    assert_eq!(log.committed("ingest", 0).await.expect("committed"), None);
    let positions =
        log.append((0..10).map(|i| record("same-key", format!("v{i}"), i)).collect()).await.expect("append");
    let partition = positions[0].partition;
    let sixth = positions[5].offset;
    log.commit("ingest", partition, sixth).await.expect("commit");
    assert_eq!(log.committed("ingest", partition).await.expect("committed"), Some(sixth));
    assert_eq!(log.committed("other", partition).await.expect("committed"), None);
    let rest = log.read(partition, sixth, 100).await.expect("read");
    let values: Vec<_> = rest.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(values, ["v5", "v6", "v7", "v8", "v9"]);

    let log = factory.reopen(log).await;
    assert_eq!(log.committed("ingest", partition).await.expect("committed"), Some(sixth));
    assert!(log.consumer_groups().await.expect("groups").contains(&"ingest".to_string()));
    let end = log.watermarks(partition).await.expect("watermarks").end;
    log.commit("ingest", partition, end).await.expect("committing the end is allowed");
    assert!(log.commit("ingest", partition, end + 1000).await.is_err(), "past the end");
    assert!(matches!(log.commit("bad group/name", partition, 0).await, Err(LogError::InvalidGroup(_))));
    log.close().await.expect("close");
}

pub async fn concurrent_producers<F: LogFactory>(factory: &F) {
    let log = Arc::new(factory.create(4).await);
    let mut tasks = Vec::new();
    for producer in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for round in 0..40 {
                let batch = (0..5)
                    .map(|i| record(&format!("p{producer}-k{i}"), format!("{producer}/{i}/{round}"), round))
                    .collect();
                positions.extend(log.append(batch).await.expect("append"));
            }
            positions
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for position in task.await.expect("producer task") {
            assert!(seen.insert(position), "two records at {position:?}");
        }
    }
    assert_eq!(seen.len(), 8 * 40 * 5);
    let by_key = values_by_key(&read_everything(log.as_ref()).await);
    assert_eq!(by_key.len(), 8 * 5);
    for values in by_key.values() {
        let rounds: Vec<u64> = values
            .iter()
            .map(|v| v.rsplit('/').next().and_then(|r| r.parse().ok()).expect("round"))
            .collect();
        assert_eq!(rounds, (0..40).collect::<Vec<_>>(), "per-key order");
    }
    log.close().await.expect("close");
}

pub async fn torn_write_recovery<F: LogFactory>(factory: &F) {
    let log = factory.create(1).await;
    for i in 0..10 {
        log.append(vec![record("k", format!("v{i}"), i)]).await.expect("append");
    }
    let log = factory.reopen_after_torn_write(log).await;
    let records = read_all(&log, 0).await;
    let values: Vec<_> = records.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(values, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    let position = log.append(vec![record("k", "v10".into(), 10)]).await.expect("append")[0];
    assert!(position.offset > records[9].offset);
    assert_eq!(read_all(&log, 0).await.len(), 11);
    // What was appended after recovery reads back after another restart:
    // the damaged bytes were really gone, not just hidden.
    let log = factory.reopen(log).await;
    let values: Vec<_> =
        read_all(&log, 0).await.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    assert_eq!(values, (0..=10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    log.close().await.expect("close");
}

pub async fn time_lookup<F: LogFactory>(factory: &F) {
    let log = factory.create(1).await;
    let mut offsets = Vec::new();
    for ts in [1_000, 2_000, 2_000, 3_000] {
        offsets.push(log.append(vec![record("k", format!("at {ts}"), ts)]).await.expect("append")[0].offset);
    }
    assert_eq!(log.offset_for_time(0, 0).await.expect("lookup"), Some(offsets[0]));
    assert_eq!(log.offset_for_time(0, 1_000).await.expect("lookup"), Some(offsets[0]));
    assert_eq!(log.offset_for_time(0, 1_500).await.expect("lookup"), Some(offsets[1]));
    assert_eq!(log.offset_for_time(0, 2_001).await.expect("lookup"), Some(offsets[3]));
    assert_eq!(log.offset_for_time(0, 3_001).await.expect("lookup"), None);
    // Clocks are not monotonic: the answer is the first record, in log
    // order, that is at least that new.
    let late = log.append(vec![record("k", "at 9000".into(), 9_000)]).await.expect("append")[0].offset;
    log.append(vec![record("k", "at 4000".into(), 4_000)]).await.expect("append");
    assert_eq!(log.offset_for_time(0, 3_500).await.expect("lookup"), Some(late));
    assert_eq!(log.offset_for_time(0, 9_001).await.expect("lookup"), None);
    log.close().await.expect("close");
}

pub async fn read_bounds<F: LogFactory>(factory: &F) {
    let log = factory.create(1).await;
    let marks = log.watermarks(0).await.expect("watermarks");
    assert_eq!(marks.start, marks.end, "a new log is empty");
    assert!(log.read(0, marks.end, 10).await.expect("read").is_empty());
    log.append((0..20).map(|i| record("k", format!("v{i}"), i)).collect()).await.expect("append");
    assert_eq!(log.read(0, marks.start, 7).await.expect("read").len(), 7);
    let end = log.watermarks(0).await.expect("watermarks").end;
    assert!(log.read(0, end, 10).await.expect("read").is_empty());
    assert!(log.read(0, end + 1_000, 10).await.expect("read").is_empty(), "past the end");
    let last = log.read(0, end - 1, 10).await.expect("read");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].value, b"v19");
    assert!(matches!(log.read(5, 0, 1).await, Err(LogError::UnknownPartition { partition: 5, .. })));
    log.close().await.expect("close");
}
