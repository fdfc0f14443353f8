//! The tables beside `events` in a query session: persons, person-id
//! overrides and groups, as Arrow tables built from what the meta store
//! returned. The query engine loads them per project and registers them
//! with [`register_person_tables`]; this crate stays ignorant of the meta
//! store itself.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::Value;
use warren_core::person::{Group, Person, PersonOverride};

use crate::StoreError;

fn timestamp_field(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false)
}

fn stamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn register(
    ctx: &SessionContext,
    name: &str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<(), StoreError> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
    Ok(())
}

/// Registers `persons`, `person_overrides` and `groups` in `ctx`. Property
/// columns are compact JSON text, as in `events`.
pub fn register_person_tables(
    ctx: &SessionContext,
    persons: &[Person],
    overrides: &[PersonOverride],
    groups: &[Group],
) -> Result<(), StoreError> {
    let json = |properties: &warren_core::person::Properties| Value::Object(properties.clone()).to_string();
    register(
        ctx,
        "persons",
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("team_id", DataType::Int64, false),
            Field::new("properties", DataType::Utf8, false),
            timestamp_field("created_at"),
            Field::new("is_identified", DataType::Boolean, false),
            Field::new("version", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(persons.iter().map(|p| p.uuid.to_string()))),
            Arc::new(Int64Array::from_iter_values(persons.iter().map(|p| p.team_id))),
            Arc::new(StringArray::from_iter_values(persons.iter().map(|p| json(&p.properties)))),
            stamps(persons.iter().map(|p| p.created_at_us).collect()),
            Arc::new(BooleanArray::from(persons.iter().map(|p| p.is_identified).collect::<Vec<_>>())),
            Arc::new(Int64Array::from_iter_values(persons.iter().map(|p| p.version))),
        ],
    )?;
    register(
        ctx,
        "person_overrides",
        vec![
            Field::new("team_id", DataType::Int64, false),
            Field::new("old_person_id", DataType::Utf8, false),
            Field::new("override_person_id", DataType::Utf8, false),
            Field::new("version", DataType::Int64, false),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(overrides.iter().map(|o| o.team_id))),
            Arc::new(StringArray::from_iter_values(overrides.iter().map(|o| o.old_person_id.to_string()))),
            Arc::new(StringArray::from_iter_values(
                overrides.iter().map(|o| o.override_person_id.to_string()),
            )),
            Arc::new(Int64Array::from_iter_values(overrides.iter().map(|o| o.version))),
        ],
    )?;
    register(
        ctx,
        "groups",
        vec![
            Field::new("team_id", DataType::Int64, false),
            Field::new("group_type_index", DataType::Int32, false),
            Field::new("group_key", DataType::Utf8, false),
            Field::new("properties", DataType::Utf8, false),
            timestamp_field("created_at"),
            Field::new("version", DataType::Int64, false),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(groups.iter().map(|g| g.team_id))),
            Arc::new(Int32Array::from_iter_values(groups.iter().map(|g| g.group_type_index))),
            Arc::new(StringArray::from_iter_values(groups.iter().map(|g| g.group_key.clone()))),
            Arc::new(StringArray::from_iter_values(groups.iter().map(|g| json(&g.properties)))),
            stamps(groups.iter().map(|g| g.created_at_us).collect()),
            Arc::new(Int64Array::from_iter_values(groups.iter().map(|g| g.version))),
        ],
    )?;
    Ok(())
}
