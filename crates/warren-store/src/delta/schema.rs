//! The events table's columns, in Delta and Arrow terms, and the conversion
//! of rows into an Arrow batch. `docs/schema/events.md` documents each
//! column; change both together, and only through a schema migration.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::{DataType, StructField};

use crate::{EventRow, StoreError};

/// The partition column: the UTC date of `timestamp`.
pub(crate) const PARTITION_COLUMN: &str = "event_date";

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Long,
    Timestamp,
    Date,
}

/// `(name, kind, nullable)` in table order.
const COLUMNS: &[(&str, Kind, bool)] = &[
    ("uuid", Kind::Text, false),
    ("event", Kind::Text, false),
    ("properties", Kind::Text, false),
    ("timestamp", Kind::Timestamp, false),
    ("team_id", Kind::Long, false),
    ("distinct_id", Kind::Text, false),
    ("elements_chain", Kind::Text, false),
    ("created_at", Kind::Timestamp, false),
    ("person_id", Kind::Text, false),
    ("person_properties", Kind::Text, false),
    ("person_created_at", Kind::Timestamp, false),
    ("person_mode", Kind::Text, false),
    ("$session_id", Kind::Text, false),
    ("$window_id", Kind::Text, false),
    ("$group_0", Kind::Text, false),
    ("$group_1", Kind::Text, false),
    ("$group_2", Kind::Text, false),
    ("$group_3", Kind::Text, false),
    ("$group_4", Kind::Text, false),
    ("inserted_at", Kind::Timestamp, false),
    (PARTITION_COLUMN, Kind::Date, false),
];

pub(crate) fn delta_columns() -> Vec<StructField> {
    COLUMNS
        .iter()
        .map(|(name, kind, nullable)| {
            let data_type = match kind {
                Kind::Text => DataType::STRING,
                Kind::Long => DataType::LONG,
                Kind::Timestamp => DataType::TIMESTAMP,
                Kind::Date => DataType::DATE,
            };
            StructField::new(*name, data_type, *nullable)
        })
        .collect()
}

pub(crate) fn arrow_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(name, kind, nullable)| {
            let data_type = match kind {
                Kind::Text => ArrowType::Utf8,
                Kind::Long => ArrowType::Int64,
                Kind::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                Kind::Date => ArrowType::Date32,
            };
            Field::new(*name, data_type, *nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rows as one Arrow batch, sorted by (team_id, event, timestamp) so each
/// file's row groups prune well for the queries insights run.
pub(crate) fn to_batch(mut rows: Vec<EventRow>, inserted_at_us: i64) -> Result<RecordBatch, StoreError> {
    rows.sort_by(|a, b| (a.team_id, &a.event, a.timestamp_us).cmp(&(b.team_id, &b.event, b.timestamp_us)));
    let n = rows.len();
    let text = || StringBuilder::with_capacity(n, n * 16);
    let stamp = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut uuid, mut event, mut properties, mut distinct_id, mut elements_chain) =
        (text(), text(), text(), text(), text());
    let (mut person_id, mut person_properties, mut person_mode, mut session_id, mut window_id) =
        (text(), text(), text(), text(), text());
    let mut groups = [text(), text(), text(), text(), text()];
    let (mut timestamp, mut created_at, mut person_created_at, mut inserted_at) =
        (stamp(), stamp(), stamp(), stamp());
    let mut team_id = Int64Builder::with_capacity(n);
    let mut event_date = Date32Builder::with_capacity(n);
    let mut uuid_text = uuid::Uuid::encode_buffer();
    for row in &rows {
        uuid.append_value(row.uuid.hyphenated().encode_lower(&mut uuid_text));
        event.append_value(&row.event);
        properties.append_value(&row.properties);
        timestamp.append_value(row.timestamp_us);
        team_id.append_value(row.team_id);
        distinct_id.append_value(&row.distinct_id);
        elements_chain.append_value(&row.elements_chain);
        created_at.append_value(row.created_at_us);
        person_id.append_value(row.person_id.hyphenated().encode_lower(&mut uuid_text));
        person_properties.append_value(&row.person_properties);
        person_created_at.append_value(row.person_created_at_us);
        person_mode.append_value(row.person_mode.as_str());
        session_id.append_value(&row.session_id);
        window_id.append_value(&row.window_id);
        for (builder, key) in groups.iter_mut().zip(&row.groups) {
            builder.append_value(key);
        }
        inserted_at.append_value(inserted_at_us);
        let day = row.timestamp_us.div_euclid(MICROS_PER_DAY);
        event_date.append_value(
            i32::try_from(day).map_err(|_| {
                StoreError::Invalid(format!("event {} has a timestamp out of range", row.uuid))
            })?,
        );
    }
    let [mut g0, mut g1, mut g2, mut g3, mut g4] = groups;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uuid.finish()),
        Arc::new(event.finish()),
        Arc::new(properties.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(team_id.finish()),
        Arc::new(distinct_id.finish()),
        Arc::new(elements_chain.finish()),
        Arc::new(created_at.finish()),
        Arc::new(person_id.finish()),
        Arc::new(person_properties.finish()),
        Arc::new(person_created_at.finish()),
        Arc::new(person_mode.finish()),
        Arc::new(session_id.finish()),
        Arc::new(window_id.finish()),
        Arc::new(g0.finish()),
        Arc::new(g1.finish()),
        Arc::new(g2.finish()),
        Arc::new(g3.finish()),
        Arc::new(g4.finish()),
        Arc::new(inserted_at.finish()),
        Arc::new(event_date.finish()),
    ];
    Ok(RecordBatch::try_new(arrow_schema(), columns)?)
}

/// Refuses a table whose columns are not the ones this build writes.
pub(crate) fn check(table: &deltalake::DeltaTable) -> Result<(), StoreError> {
    let schema = table.snapshot()?.schema();
    let found: Vec<String> = schema.fields().map(|field| field.name().to_string()).collect();
    let expected: Vec<&str> = COLUMNS.iter().map(|(name, _, _)| *name).collect();
    if found != expected {
        return Err(StoreError::Invalid(format!(
            "the events table at {} has columns {found:?}; this build writes {expected:?}",
            table.table_url()
        )));
    }
    Ok(())
}
