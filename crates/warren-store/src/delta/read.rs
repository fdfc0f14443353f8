//! Reading rows back out of the table: for tools, tests and exports, not
//! for insights (those plan their own DataFusion queries).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Date32Type, Int64Type, TimestampMicrosecondType};
use deltalake::datafusion::prelude::SessionContext;
use uuid::Uuid;
use warren_core::person::PersonMode;

use super::DeltaStore;
use crate::digest::{Cut, DayDigest, Fingerprint};
use crate::{EventKey, EventRow, StoreError};

/// Keys read by one statement: the join's small side.
const KEYS_PER_READ: usize = 5_000;

/// The UTC day of a time in µs, as the table's partition column holds it.
fn day_of(timestamp_us: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp_micros(timestamp_us).map(|at| at.date_naive())
}

impl DeltaStore {
    /// Every row matching a SQL `WHERE` condition (all rows when `None`),
    /// ordered by timestamp then uuid.
    pub async fn read_rows(&self, condition: Option<&str>) -> Result<Vec<EventRow>, StoreError> {
        let ctx = SessionContext::new();
        self.register(&ctx, "events").await?;
        let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        let batches = ctx
            .sql(&format!("SELECT * FROM events{filter} ORDER BY timestamp, uuid"))
            .await?
            .collect()
            .await?;
        let mut rows = Vec::new();
        for batch in &batches {
            rows.extend(rows_of(batch)?);
        }
        Ok(rows)
    }

    /// The stored rows of `keys` (see [`crate::EventStore::read_events`]),
    /// a bounded slice of keys at a time. Each slice is joined against the
    /// table (the slice is the join's small side, so only matching rows are
    /// held), within the days and times its keys span and their projects —
    /// the partitions and the files' statistics bound what is scanned.
    /// Slices are cut from keys sorted by project and time, so a catch-up
    /// over recent records scans recent files only. (Listing the uuids in
    /// the statement instead makes file pruning recurse once per uuid.)
    pub async fn read_keys(&self, keys: &[EventKey]) -> Result<Vec<EventRow>, StoreError> {
        let mut keys = keys.to_vec();
        keys.sort_unstable_by_key(|key| (key.team_id, key.timestamp_us));
        let mut rows = Vec::with_capacity(keys.len());
        for slice in keys.chunks(KEYS_PER_READ) {
            let from = slice.iter().map(|key| key.timestamp_us).min().unwrap_or_default();
            let to = slice.iter().map(|key| key.timestamp_us).max().unwrap_or_default();
            let (Some(first_day), Some(last_day)) = (day_of(from), day_of(to)) else { continue };
            let teams: BTreeSet<i64> = slice.iter().map(|key| key.team_id).collect();
            let ctx = SessionContext::new();
            self.register(&ctx, "events").await?;
            let wanted = RecordBatch::try_from_iter([
                (
                    "team_id",
                    Arc::new(Int64Array::from_iter_values(slice.iter().map(|k| k.team_id))) as ArrayRef,
                ),
                (
                    "uuid",
                    Arc::new(StringArray::from_iter_values(
                        slice.iter().map(|k| k.uuid.hyphenated().to_string()),
                    )) as ArrayRef,
                ),
            ])?;
            ctx.register_batch("wanted", wanted)?;
            let sql = format!(
                "SELECT events.* FROM wanted JOIN events \
                 ON events.team_id = wanted.team_id AND events.uuid = wanted.uuid \
                 WHERE events.event_date >= DATE '{}' AND events.event_date <= DATE '{}' \
                 AND events.timestamp >= to_timestamp_micros({from}) \
                 AND events.timestamp <= to_timestamp_micros({to}) \
                 AND events.team_id IN ({})",
                first_day.format("%Y-%m-%d"),
                last_day.format("%Y-%m-%d"),
                teams.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
            );
            for batch in ctx.sql(&sql).await?.collect().await? {
                rows.extend(rows_of(&batch)?);
            }
        }
        Ok(rows)
    }

    /// The projects the table holds events of, in order.
    pub async fn team_ids(&self) -> Result<Vec<i64>, StoreError> {
        let ctx = SessionContext::new();
        self.register(&ctx, "events").await?;
        let batches =
            ctx.sql("SELECT DISTINCT team_id FROM events ORDER BY team_id").await?.collect().await?;
        let mut teams = Vec::new();
        for batch in &batches {
            let team = deltalake::arrow::compute::cast(column(batch, "team_id")?, &DataType::Int64)?;
            teams.extend(team.as_primitive::<Int64Type>().iter().flatten());
        }
        Ok(teams)
    }

    /// Rows and their checksum per UTC day, oldest first.
    pub async fn day_summaries(&self) -> Result<Vec<DaySummary>, StoreError> {
        let ctx = SessionContext::new();
        self.register(&ctx, "events").await?;
        day_summaries_in(&ctx).await
    }

    /// Rows and the checksum a cluster's is compared with
    /// ([`DayDigest`]) of every day, or of one, oldest first, of the rows
    /// `cut` takes; streamed.
    pub async fn day_digests(&self, day: Option<NaiveDate>, cut: Cut) -> Result<Vec<DayDigest>, StoreError> {
        use futures_util::TryStreamExt;
        let (ctx, filter) = self.cut_session(day, cut).await?;
        let mut stream = ctx
            .sql(&format!(
                "SELECT event_date AS day, team_id, uuid, event, distinct_id, person_id, \
                 CAST(timestamp AS BIGINT) AS at, properties FROM events{filter}"
            ))
            .await?
            .execute_stream()
            .await?;
        let mut days: std::collections::BTreeMap<i32, (u64, u64)> = std::collections::BTreeMap::new();
        while let Some(batch) = stream.try_next().await? {
            let text = |name: &str| cast(&batch, name, &DataType::Utf8);
            let long = |name: &str| cast(&batch, name, &DataType::Int64);
            let (uuid, event, distinct_id, person, properties) = (
                text("uuid")?,
                text("event")?,
                text("distinct_id")?,
                text("person_id")?,
                text("properties")?,
            );
            let (team, at, day) = (long("team_id")?, long("at")?, cast(&batch, "day", &DataType::Date32)?);
            let (team, at) = (team.as_primitive::<Int64Type>(), at.as_primitive::<Int64Type>());
            let day = day.as_primitive::<Date32Type>();
            let (uuid, event, distinct_id) =
                (uuid.as_string::<i32>(), event.as_string::<i32>(), distinct_id.as_string::<i32>());
            let (person, properties) = (person.as_string::<i32>(), properties.as_string::<i32>());
            for row in 0..batch.num_rows() {
                let fingerprint = Fingerprint {
                    team_id: team.value(row),
                    uuid: uuid.value(row),
                    event: event.value(row),
                    distinct_id: distinct_id.value(row),
                    person_id: person.value(row),
                    timestamp_us: at.value(row),
                    properties: properties.value(row),
                };
                let entry = days.entry(day.value(row)).or_default();
                entry.0 += 1;
                entry.1 = entry.1.wrapping_add(fingerprint.hash());
            }
        }
        days.into_iter()
            .map(|(day, (rows, checksum))| {
                // Date32 counts days from 1970-01-01, day 719,163 of the era.
                let date = NaiveDate::from_num_days_from_ce_opt(day.saturating_add(719_163))
                    .ok_or_else(|| malformed("event_date", &day.to_string()))?;
                Ok(DayDigest { day: date, rows, checksum })
            })
            .collect()
    }

    /// Rows per UTC day of the rows `cut` takes, oldest first: read from
    /// the received times alone.
    pub async fn day_counts(&self, cut: Cut) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let (ctx, filter) = self.cut_session(None, cut).await?;
        rows_per_day_in(&ctx, &filter).await
    }

    /// A session with the table registered as `events`, and the `WHERE`
    /// clause (empty, or with a leading space) taking `day`'s rows (every
    /// day's when `None`) that `cut` takes.
    async fn cut_session(
        &self,
        day: Option<NaiveDate>,
        cut: Cut,
    ) -> Result<(SessionContext, String), StoreError> {
        let (from, before) = cut.bounds();
        // A window of received times takes few of the rows: the filter is
        // evaluated on `created_at` alone before the other columns of a row
        // are decoded, and the files' statistics skip older files whole.
        let config = deltalake::datafusion::prelude::SessionConfig::new()
            .set_bool("datafusion.execution.parquet.pushdown_filters", from.is_some());
        let ctx = SessionContext::new_with_config(config);
        self.register(&ctx, "events").await?;
        let mut conditions = Vec::new();
        if let Some(day) = day {
            conditions.push(format!("event_date = DATE '{}'", day.format("%Y-%m-%d")));
        }
        if let Some(from) = from {
            conditions.push(format!("created_at >= to_timestamp_micros({from})"));
        }
        if let Some(before) = before {
            conditions.push(format!("created_at < to_timestamp_micros({before})"));
        }
        let filter = match conditions.is_empty() {
            true => String::new(),
            false => format!(" WHERE {}", conditions.join(" AND ")),
        };
        Ok((ctx, filter))
    }

    /// Rows per UTC day (the table's partitions), oldest first.
    pub async fn rows_per_day(&self) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let table = {
            let mut table = self.table.lock().await;
            if self.pinned.is_none() {
                table.update_state().await?;
            }
            table.clone()
        };
        super::files::rows_per_day_of(&table).await
    }
}

/// Rows per UTC day of the table registered as `events` in `ctx`.
/// `filter` is a `WHERE` clause with a leading space, or empty.
pub(super) async fn rows_per_day_in(
    ctx: &SessionContext,
    filter: &str,
) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(event_date AS VARCHAR) AS day, count(*) AS n FROM events{filter} GROUP BY event_date \
             ORDER BY day"
        ))
        .await?
        .collect()
        .await?;
    let mut days = Vec::new();
    for batch in &batches {
        let day = deltalake::arrow::compute::cast(column(batch, "day")?, &DataType::Utf8)?;
        let count = deltalake::arrow::compute::cast(column(batch, "n")?, &DataType::Int64)?;
        let count = count.as_primitive::<Int64Type>();
        for (i, day) in day.as_string::<i32>().iter().enumerate() {
            let day = day.unwrap_or_default();
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| malformed("event_date", day))?;
            days.push((day, count.value(i).max(0) as u64));
        }
    }
    Ok(days)
}

/// One UTC day of the table: its rows and a checksum of them that does
/// not depend on their order or files — what a drill compares a restored
/// table with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySummary {
    pub day: NaiveDate,
    pub rows: u64,
    /// The wrapping sum, over the day's rows, of the first 8 bytes of the
    /// SHA-256 of each row's project, uuid, event, distinct id, person
    /// and time: a lost, added or changed row changes it.
    pub checksum: u64,
}

/// [`DaySummary`] of every day of the table registered as `events` in
/// `ctx`, oldest first; streamed, so memory stays small however large the
/// table.
pub(super) async fn day_summaries_in(ctx: &SessionContext) -> Result<Vec<DaySummary>, StoreError> {
    use futures_util::TryStreamExt;
    use sha2::{Digest, Sha256};
    let mut stream = ctx
        .sql(
            "SELECT CAST(event_date AS VARCHAR) AS day, team_id, uuid, event, distinct_id, person_id, \
             CAST(timestamp AS BIGINT) AS at FROM events",
        )
        .await?
        .execute_stream()
        .await?;
    let mut days: std::collections::BTreeMap<String, (u64, u64)> = std::collections::BTreeMap::new();
    while let Some(batch) = stream.try_next().await? {
        let text = |name: &str| cast(&batch, name, &DataType::Utf8);
        let (day, uuid, event, distinct_id, person) =
            (text("day")?, text("uuid")?, text("event")?, text("distinct_id")?, text("person_id")?);
        let long = |name: &str| cast(&batch, name, &DataType::Int64);
        let (team, at) = (long("team_id")?, long("at")?);
        let (team, at) = (team.as_primitive::<Int64Type>(), at.as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            let mut hash = Sha256::new();
            hash.update(team.value(row).to_le_bytes());
            for part in [&uuid, &event, &distinct_id, &person] {
                let value = part.as_string::<i32>().value(row);
                hash.update((value.len() as u64).to_le_bytes());
                hash.update(value.as_bytes());
            }
            hash.update(at.value(row).to_le_bytes());
            let digest = hash.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            let entry = days.entry(day.as_string::<i32>().value(row).to_string()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.wrapping_add(u64::from_le_bytes(first));
        }
    }
    days.into_iter()
        .map(|(day, (rows, checksum))| {
            let day =
                NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| malformed("event_date", &day))?;
            Ok(DaySummary { day, rows, checksum })
        })
        .collect()
}

/// A column of `batch` as the type `to`: Delta readers may hand any of
/// Arrow's layouts of a type back.
fn cast(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, StoreError> {
    Ok(deltalake::arrow::compute::cast(column(batch, name)?, to)?)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, StoreError> {
    batch
        .column_by_name(name)
        .map(|column| column.as_ref())
        .ok_or_else(|| StoreError::Invalid(format!("the events table has no column {name}")))
}

fn malformed(what: &str, value: &str) -> StoreError {
    StoreError::Invalid(format!("the events table holds a malformed {what}: {value:?}"))
}

fn rows_of(batch: &RecordBatch) -> Result<Vec<EventRow>, StoreError> {
    // Delta readers may hand text back as any of Arrow's string layouts.
    let text = |name: &str| -> Result<Vec<String>, StoreError> {
        let array = column(batch, name)?;
        let cast = deltalake::arrow::compute::cast(array, &deltalake::arrow::datatypes::DataType::Utf8)?;
        Ok(cast.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
    };
    let stamps = |name: &str| -> Result<Vec<i64>, StoreError> {
        let array = column(batch, name)?;
        let values = array
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| StoreError::Invalid(format!("column {name} is not a microsecond timestamp")))?;
        Ok(values.iter().map(Option::unwrap_or_default).collect())
    };
    let uuids = |name: &str| -> Result<Vec<Uuid>, StoreError> {
        text(name)?.iter().map(|v| Uuid::from_str(v).map_err(|_| malformed("uuid", v))).collect()
    };
    let uuid = uuids("uuid")?;
    let (event, properties, distinct_id, elements_chain) =
        (text("event")?, text("properties")?, text("distinct_id")?, text("elements_chain")?);
    let (person_id, person_properties, person_mode) =
        (uuids("person_id")?, text("person_properties")?, text("person_mode")?);
    let (session_id, window_id) = (text("$session_id")?, text("$window_id")?);
    let groups =
        [text("$group_0")?, text("$group_1")?, text("$group_2")?, text("$group_3")?, text("$group_4")?];
    let (timestamp, created_at, person_created_at) =
        (stamps("timestamp")?, stamps("created_at")?, stamps("person_created_at")?);
    let team_id = column(batch, "team_id")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| StoreError::Invalid("column team_id is not a 64-bit integer".into()))?;
    (0..batch.num_rows())
        .map(|i| {
            let mode = match person_mode[i].as_str() {
                "full" => PersonMode::Full,
                "propertyless" => PersonMode::Propertyless,
                "force_upgrade" => PersonMode::ForceUpgrade,
                other => return Err(malformed("person_mode", other)),
            };
            Ok(EventRow {
                uuid: uuid[i],
                event: event[i].clone(),
                properties: properties[i].clone(),
                timestamp_us: timestamp[i],
                team_id: team_id.value(i),
                distinct_id: distinct_id[i].clone(),
                elements_chain: elements_chain[i].clone(),
                created_at_us: created_at[i],
                person_id: person_id[i],
                person_properties: person_properties[i].clone(),
                person_created_at_us: person_created_at[i],
                person_mode: mode,
                session_id: session_id[i].clone(),
                window_id: window_id[i].clone(),
                groups: std::array::from_fn(|slot| groups[slot][i].clone()),
            })
        })
        .collect()
}
