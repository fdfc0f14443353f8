//! Persons, distinct ids, overrides, groups, ingestion warnings and ingest
//! offsets: what ingest reads before a batch and writes after it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Transaction};
use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, PersonOverride, Properties, TeamId};

use super::dialect::Dialect;
use super::statement::{int, placeholders, text, value_rows};
use crate::{IngestCommit, MetaError, PersonLookup};

const PERSON_COLUMNS: &str =
    "p.uuid, p.team_id, p.properties, p.created_at_us, p.is_identified, p.version, p.created_by_event";

fn uuid(row: &AnyRow, column: &str) -> Result<Uuid, MetaError> {
    let value = text(row, column)?;
    Uuid::from_str(&value).map_err(|e| MetaError::Corrupt { what: "uuid", reason: format!("{value:?}: {e}") })
}

fn properties(row: &AnyRow, column: &str) -> Result<Properties, MetaError> {
    let value = text(row, column)?;
    serde_json::from_str(&value)
        .map_err(|e| MetaError::Corrupt { what: "properties JSON", reason: e.to_string() })
}

fn person_from_row(row: &AnyRow) -> Result<Person, MetaError> {
    Ok(Person {
        uuid: uuid(row, "uuid")?,
        team_id: int(row, "team_id")?,
        properties: properties(row, "properties")?,
        created_at_us: int(row, "created_at_us")?,
        is_identified: int(row, "is_identified")? != 0,
        version: int(row, "version")?,
        created_by_event: optional_uuid(row, "created_by_event")?,
    })
}

fn optional_uuid(row: &AnyRow, column: &str) -> Result<Option<Uuid>, MetaError> {
    let value: Option<String> = sqlx::Row::try_get(row, column)?;
    value
        .map(|v| {
            Uuid::from_str(&v).map_err(|e| MetaError::Corrupt { what: "uuid", reason: format!("{v:?}: {e}") })
        })
        .transpose()
}

fn group_from_row(row: &AnyRow) -> Result<Group, MetaError> {
    Ok(Group {
        team_id: int(row, "team_id")?,
        group_type_index: i32::try_from(int(row, "group_type_index")?)
            .map_err(|e| MetaError::Corrupt { what: "group type index", reason: e.to_string() })?,
        group_key: text(row, "group_key")?,
        properties: properties(row, "properties")?,
        created_at_us: int(row, "created_at_us")?,
        version: int(row, "version")?,
    })
}

fn json_text(value: &Properties) -> String {
    serde_json::Value::Object(value.clone()).to_string()
}

/// Runs `build` for slices of `items` small enough for one statement.
pub(super) fn chunks<T>(dialect: Dialect, items: &[T], params_per_item: usize) -> impl Iterator<Item = &[T]> {
    items.chunks((dialect.max_parameters() / params_per_item.max(1)).clamp(1, 1000))
}

pub(super) async fn persons_by_distinct_ids(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    distinct_ids: &[String],
) -> Result<PersonLookup, MetaError> {
    let mut lookup = PersonLookup::default();
    for chunk in chunks(dialect, distinct_ids, 1) {
        let sql = format!(
            "SELECT d.distinct_id, {PERSON_COLUMNS}
             FROM person_distinct_ids d
             JOIN persons p ON p.team_id = d.team_id AND p.uuid = d.person_uuid
             WHERE d.team_id = $1 AND d.distinct_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(team_id);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(pool).await? {
            let person = person_from_row(&row)?;
            lookup.distinct_ids.insert(text(&row, "distinct_id")?, person.uuid);
            lookup.persons.insert(person.uuid, person);
        }
    }
    Ok(lookup)
}

pub(super) async fn groups_by_keys(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    keys: &[(i32, String)],
) -> Result<Vec<Group>, MetaError> {
    let mut by_index: HashMap<i32, Vec<&str>> = HashMap::new();
    for (index, key) in keys {
        by_index.entry(*index).or_default().push(key);
    }
    let mut groups = Vec::new();
    for (index, keys) in by_index {
        for chunk in chunks(dialect, &keys, 1) {
            let sql = format!(
                "SELECT team_id, group_type_index, group_key, properties, created_at_us, version FROM groups
                 WHERE team_id = $1 AND group_type_index = $2 AND group_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(team_id).bind(i64::from(index));
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(pool).await? {
                groups.push(group_from_row(&row)?);
            }
        }
    }
    Ok(groups)
}

pub(super) async fn group_types(pool: &AnyPool, team_id: TeamId) -> Result<Vec<GroupType>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, group_type, group_type_index FROM group_types WHERE team_id = $1 ORDER BY group_type_index",
    )
    .bind(team_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(GroupType {
                team_id: int(row, "team_id")?,
                group_type: text(row, "group_type")?,
                group_type_index: i32::try_from(int(row, "group_type_index")?)
                    .map_err(|e| MetaError::Corrupt { what: "group type index", reason: e.to_string() })?,
            })
        })
        .collect()
}

pub(super) async fn commit_ingest(
    pool: &AnyPool,
    dialect: Dialect,
    commit: &IngestCommit,
) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    for merge in &commit.merges {
        let (team, old, into) = (merge.team_id, merge.old.to_string(), merge.into.to_string());
        sqlx::query(
            "UPDATE person_distinct_ids SET person_uuid = $1 WHERE team_id = $2 AND person_uuid = $3",
        )
        .bind(&into)
        .bind(team)
        .bind(&old)
        .execute(&mut *tx)
        .await?;
        // Keep overrides one hop deep: whatever pointed at the merged-away
        // person now points at the survivor.
        sqlx::query(
            "UPDATE person_overrides SET override_person_id = $1, version = version + 1
             WHERE team_id = $2 AND override_person_id = $3",
        )
        .bind(&into)
        .bind(team)
        .bind(&old)
        .execute(&mut *tx)
        .await?;
        let moved = PersonOverride {
            team_id: team,
            old_person_id: merge.old,
            override_person_id: merge.into,
            version: 1,
        };
        upsert_overrides(&mut tx, dialect, std::slice::from_ref(&moved)).await?;
        sqlx::query("DELETE FROM persons WHERE team_id = $1 AND uuid = $2")
            .bind(team)
            .bind(&old)
            .execute(&mut *tx)
            .await?;
    }
    for chunk in chunks(dialect, &commit.persons, 7) {
        let sql = format!(
            "INSERT INTO persons (team_id, uuid, properties, created_at_us, is_identified, version, created_by_event)
             VALUES {}
             ON CONFLICT (team_id, uuid) DO UPDATE SET properties = excluded.properties,
                 created_at_us = excluded.created_at_us, is_identified = excluded.is_identified,
                 version = excluded.version",
            value_rows(7, chunk.len())
        );
        let mut query: Query<'_, Any, AnyArguments<'_>> = sqlx::query(&sql);
        for person in chunk {
            query = query
                .bind(person.team_id)
                .bind(person.uuid.to_string())
                .bind(json_text(&person.properties))
                .bind(person.created_at_us)
                .bind(i64::from(person.is_identified))
                .bind(person.version)
                .bind(person.created_by_event.map(|u| u.to_string()));
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in chunks(dialect, &commit.distinct_ids, 3) {
        let sql = format!(
            "INSERT INTO person_distinct_ids (team_id, distinct_id, person_uuid) VALUES {}
             ON CONFLICT (team_id, distinct_id) DO UPDATE SET person_uuid = excluded.person_uuid",
            value_rows(3, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for assignment in chunk {
            query = query
                .bind(assignment.team_id)
                .bind(assignment.distinct_id.as_str())
                .bind(assignment.person_uuid.to_string());
        }
        query.execute(&mut *tx).await?;
    }
    upsert_overrides(&mut tx, dialect, &commit.overrides).await?;
    for group_type in &commit.group_types {
        sqlx::query(
            "INSERT INTO group_types (team_id, group_type, group_type_index) VALUES ($1, $2, $3)
             ON CONFLICT (team_id, group_type) DO NOTHING",
        )
        .bind(group_type.team_id)
        .bind(group_type.group_type.as_str())
        .bind(i64::from(group_type.group_type_index))
        .execute(&mut *tx)
        .await?;
    }
    for chunk in chunks(dialect, &commit.groups, 6) {
        let sql = format!(
            "INSERT INTO groups (team_id, group_type_index, group_key, properties, created_at_us, version)
             VALUES {}
             ON CONFLICT (team_id, group_type_index, group_key) DO UPDATE SET
                 properties = excluded.properties, created_at_us = excluded.created_at_us,
                 version = excluded.version",
            value_rows(6, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for group in chunk {
            query = query
                .bind(group.team_id)
                .bind(i64::from(group.group_type_index))
                .bind(group.group_key.as_str())
                .bind(json_text(&group.properties))
                .bind(group.created_at_us)
                .bind(group.version);
        }
        query.execute(&mut *tx).await?;
    }
    for chunk in chunks(dialect, &commit.warnings, 5) {
        let sql = format!(
            "INSERT INTO ingestion_warnings (team_id, kind, event_uuid, details, timestamp_us) VALUES {}",
            value_rows(5, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for warning in chunk {
            query = query
                .bind(warning.team_id)
                .bind(warning.kind.as_str())
                .bind(warning.event_uuid.map(|u| u.to_string()))
                .bind(warning.details.to_string())
                .bind(warning.timestamp_us);
        }
        query.execute(&mut *tx).await?;
    }
    super::entities::record_definitions(
        &mut tx,
        dialect,
        &commit.event_definitions,
        &commit.property_definitions,
    )
    .await?;
    for (partition, next) in &commit.offsets {
        let next = i64::try_from(*next)
            .map_err(|_| MetaError::Invalid { what: "log offset", reason: format!("{next} exceeds i64") })?;
        sqlx::query(
            "INSERT INTO ingest_offsets (consumer, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, partition) DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(commit.consumer.as_str())
        .bind(i64::from(*partition))
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    super::recordings::upsert_chunks(&mut tx, dialect, &commit.recordings).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts overrides, or re-points existing ones with a new version. One
/// statement may not touch a row twice, so each old id appears once.
async fn upsert_overrides(
    tx: &mut Transaction<'_, Any>,
    dialect: Dialect,
    overrides: &[PersonOverride],
) -> Result<(), MetaError> {
    for chunk in chunks(dialect, overrides, 3) {
        let rows = (0..chunk.len())
            .map(|row| format!("(${}, ${}, ${}, 1)", row * 3 + 1, row * 3 + 2, row * 3 + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO person_overrides (team_id, old_person_id, override_person_id, version) VALUES {rows}
             ON CONFLICT (team_id, old_person_id) DO UPDATE SET
                 override_person_id = excluded.override_person_id, version = person_overrides.version + 1"
        );
        let mut query = sqlx::query(&sql);
        for o in chunk {
            query = query
                .bind(o.team_id)
                .bind(o.old_person_id.to_string())
                .bind(o.override_person_id.to_string());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) async fn ingest_offsets(pool: &AnyPool, consumer: &str) -> Result<HashMap<u32, u64>, MetaError> {
    let rows = sqlx::query("SELECT partition, next_offset FROM ingest_offsets WHERE consumer = $1")
        .bind(consumer)
        .fetch_all(pool)
        .await?;
    let corrupt = |reason: String| MetaError::Corrupt { what: "ingest offset", reason };
    rows.iter()
        .map(|row| {
            let partition = u32::try_from(int(row, "partition")?).map_err(|e| corrupt(e.to_string()))?;
            let next = u64::try_from(int(row, "next_offset")?).map_err(|e| corrupt(e.to_string()))?;
            Ok((partition, next))
        })
        .collect()
}

pub(super) async fn persons(
    pool: &AnyPool,
    team_id: TeamId,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Person>, MetaError> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM persons p WHERE p.team_id = $1 AND p.uuid > $2 ORDER BY p.uuid LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(team_id)
        .bind(after.map(|u| u.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(person_from_row).collect()
}

pub(super) async fn search_persons(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    search: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<Vec<Person>, MetaError> {
    let search = search.map(str::trim).filter(|s| !s.is_empty());
    let Some(search) = search else {
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM persons p WHERE p.team_id = $1
             ORDER BY p.created_at_us DESC, p.uuid LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(team_id)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(pool)
            .await?;
        return rows.iter().map(person_from_row).collect();
    };
    // Every test is a range over an index: a prefix `s` is
    // `s <= value < s + U+10FFFF` in byte order.
    let (distinct_id, email, name, lowered) = match dialect {
        Dialect::Sqlite => (
            "d.distinct_id",
            "lower(json_extract(q.properties, '$.email'))",
            "lower(json_extract(q.properties, '$.name'))",
            // SQLite's lower() knows ASCII letters only.
            search.to_ascii_lowercase(),
        ),
        Dialect::Postgres => (
            "d.distinct_id COLLATE \"C\"",
            "(lower(q.properties::json ->> 'email')) COLLATE \"C\"",
            "(lower(q.properties::json ->> 'name')) COLLATE \"C\"",
            search.to_lowercase(),
        ),
    };
    // `key=value` also asks for one property's exact value. No index can
    // serve any key, so this one test reads every person of the project.
    let property = property_search(search);
    let by_property = match (property, dialect) {
        (None, _) => "",
        (Some(_), Dialect::Sqlite) => {
            "UNION SELECT q.uuid FROM persons q
                   WHERE q.team_id = $1 AND CAST(json_extract(q.properties, $9) AS TEXT) = $10"
        }
        (Some(_), Dialect::Postgres) => {
            "UNION SELECT q.uuid FROM persons q WHERE q.team_id = $1 AND (q.properties::json ->> $9) = $10"
        }
    };
    // The matches first, then their rows by primary key: asked as `IN`,
    // SQLite would walk every person in creation order instead.
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM (
             SELECT CAST($2 AS TEXT) AS uuid
             UNION SELECT d.person_uuid FROM person_distinct_ids d
                   WHERE d.team_id = $1 AND {distinct_id} >= $3 AND {distinct_id} < $4
             UNION SELECT q.uuid FROM persons q WHERE q.team_id = $1 AND {email} >= $5 AND {email} < $6
             UNION SELECT q.uuid FROM persons q WHERE q.team_id = $1 AND {name} >= $5 AND {name} < $6
             {by_property}) m
         JOIN persons p ON p.team_id = $1 AND p.uuid = m.uuid
         ORDER BY p.created_at_us DESC, p.uuid LIMIT $7 OFFSET $8"
    );
    let mut query = sqlx::query(&sql)
        .bind(team_id)
        .bind(search)
        .bind(search)
        .bind(format!("{search}{PREFIX_END}"))
        .bind(&lowered)
        .bind(format!("{lowered}{PREFIX_END}"))
        .bind(i64::from(limit))
        .bind(i64::from(offset));
    if let Some((key, value)) = property {
        let key = match dialect {
            // A quoted member of a JSON path: any key but one with a quote,
            // which `property_search` refuses.
            Dialect::Sqlite => format!("$.\"{key}\""),
            Dialect::Postgres => key.to_string(),
        };
        query = query.bind(key).bind(value.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(person_from_row).collect()
}

/// `key=value` as a property and its value, both trimmed; `None` for any
/// other text (no `=`, an empty key, or a key with a double quote).
fn property_search(search: &str) -> Option<(&str, &str)> {
    let (key, value) = search.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.contains('"')).then_some((key, value.trim()))
}

/// Sorts after every text that starts the same way, in byte order.
const PREFIX_END: char = char::MAX;

pub(super) async fn count_persons(pool: &AnyPool, team_id: TeamId) -> Result<u64, MetaError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM persons WHERE team_id = $1")
        .bind(team_id)
        .fetch_one(pool)
        .await?;
    Ok(count.max(0) as u64)
}

pub(super) async fn person(pool: &AnyPool, team_id: TeamId, uuid: Uuid) -> Result<Option<Person>, MetaError> {
    let sql = format!("SELECT {PERSON_COLUMNS} FROM persons p WHERE p.team_id = $1 AND p.uuid = $2");
    let row = sqlx::query(&sql).bind(team_id).bind(uuid.to_string()).fetch_optional(pool).await?;
    row.as_ref().map(person_from_row).transpose()
}

pub(super) async fn existing_persons(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    uuids: &[Uuid],
) -> Result<HashSet<Uuid>, MetaError> {
    let mut found = HashSet::new();
    for chunk in chunks(dialect, uuids, 1) {
        let sql = format!(
            "SELECT uuid FROM persons WHERE team_id = $1 AND uuid IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(team_id);
        for person in chunk {
            query = query.bind(person.to_string());
        }
        for row in query.fetch_all(pool).await? {
            found.insert(uuid(&row, "uuid")?);
        }
    }
    Ok(found)
}

pub(super) async fn distinct_ids_of(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    persons: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, MetaError> {
    let mut out: HashMap<Uuid, Vec<String>> = persons.iter().map(|p| (*p, Vec::new())).collect();
    for chunk in chunks(dialect, persons, 1) {
        // Sorted here: an ORDER BY distinct_id would lead SQLite to walk
        // the whole primary key instead of the person index.
        let sql = format!(
            "SELECT person_uuid AS uuid, distinct_id FROM person_distinct_ids
             WHERE team_id = $1 AND person_uuid IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(team_id);
        for person in chunk {
            query = query.bind(person.to_string());
        }
        for row in query.fetch_all(pool).await? {
            out.entry(uuid(&row, "uuid")?).or_default().push(text(&row, "distinct_id")?);
        }
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    Ok(out)
}

pub(super) async fn person_overrides(
    pool: &AnyPool,
    team_id: TeamId,
) -> Result<Vec<PersonOverride>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, old_person_id, override_person_id, version FROM person_overrides
         WHERE team_id = $1 ORDER BY old_person_id",
    )
    .bind(team_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(override_of).collect()
}

pub(super) async fn overrides_into(
    pool: &AnyPool,
    dialect: Dialect,
    team_id: TeamId,
    persons: &[Uuid],
) -> Result<Vec<PersonOverride>, MetaError> {
    let mut out = Vec::new();
    for chunk in chunks(dialect, persons, 1) {
        let sql = format!(
            "SELECT team_id, old_person_id, override_person_id, version FROM person_overrides
             WHERE team_id = $1 AND override_person_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(team_id);
        for person in chunk {
            query = query.bind(person.to_string());
        }
        for row in query.fetch_all(pool).await? {
            out.push(override_of(&row)?);
        }
    }
    out.sort_by_key(|o| o.old_person_id);
    Ok(out)
}

fn override_of(row: &AnyRow) -> Result<PersonOverride, MetaError> {
    Ok(PersonOverride {
        team_id: int(row, "team_id")?,
        old_person_id: uuid(row, "old_person_id")?,
        override_person_id: uuid(row, "override_person_id")?,
        version: int(row, "version")?,
    })
}

pub(super) async fn groups(pool: &AnyPool, team_id: TeamId) -> Result<Vec<Group>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, group_type_index, group_key, properties, created_at_us, version FROM groups
         WHERE team_id = $1 ORDER BY group_type_index, group_key",
    )
    .bind(team_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(group_from_row).collect()
}

pub(super) async fn ingestion_warnings(
    pool: &AnyPool,
    team_id: TeamId,
    limit: u32,
) -> Result<Vec<IngestionWarning>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, kind, event_uuid, details, timestamp_us FROM ingestion_warnings
         WHERE team_id = $1 ORDER BY timestamp_us DESC, id DESC LIMIT $2",
    )
    .bind(team_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let details = text(row, "details")?;
            Ok(IngestionWarning {
                team_id: int(row, "team_id")?,
                kind: text(row, "kind")?,
                event_uuid: optional_uuid(row, "event_uuid")?,
                details: serde_json::from_str(&details)
                    .map_err(|e| MetaError::Corrupt { what: "warning details", reason: e.to_string() })?,
                timestamp_us: int(row, "timestamp_us")?,
            })
        })
        .collect()
}
