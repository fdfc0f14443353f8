//! Product entities as JSON documents, static cohort members, and the event
//! and property definitions ingest collects.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Transaction};
use uuid::Uuid;

use super::dialect::Dialect;
use super::statement::{int, now_rfc3339, text, value_rows};
use crate::entities::{Entity, EntityKind, EntityWrite, EventDefinition, PropertyDefinition, PropertyKind};
use crate::{MetaError, ProjectId};

const ENTITY_COLUMNS: &str = "id, project_id, kind, unique_key, body, created_by, created_at, updated_at";

fn entity_from_row(row: &AnyRow) -> Result<Entity, MetaError> {
    let body = text(row, "body")?;
    Ok(Entity {
        id: int(row, "id")?,
        project_id: int(row, "project_id")?,
        kind: EntityKind::parse(&text(row, "kind")?)?,
        unique_key: sqlx::Row::try_get(row, "unique_key")?,
        body: serde_json::from_str(&body)
            .map_err(|e| MetaError::Corrupt { what: "entity JSON", reason: e.to_string() })?,
        created_by: sqlx::Row::try_get(row, "created_by")?,
        created_at: text(row, "created_at")?,
        updated_at: text(row, "updated_at")?,
    })
}

fn taken(kind: EntityKind, key: Option<&str>) -> String {
    format!("a {} with key {:?} already exists in this project", kind.as_str(), key.unwrap_or_default())
}

pub(super) async fn create_entity(pool: &AnyPool, entity: EntityWrite) -> Result<Entity, MetaError> {
    let now = now_rfc3339();
    let row = sqlx::query(&format!(
        "INSERT INTO entities (project_id, kind, unique_key, body, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {ENTITY_COLUMNS}"
    ))
    .bind(entity.project_id)
    .bind(entity.kind.as_str())
    .bind(entity.unique_key.as_deref())
    .bind(entity.body.to_string())
    .bind(entity.created_by)
    .bind(&now)
    .fetch_one(pool)
    .await
    .map_err(|e| {
        MetaError::conflict_or(e, entity.kind.as_str(), taken(entity.kind, entity.unique_key.as_deref()))
    })?;
    entity_from_row(&row)
}

pub(super) async fn entity(
    pool: &AnyPool,
    project_id: ProjectId,
    kind: EntityKind,
    id: i64,
) -> Result<Option<Entity>, MetaError> {
    let row = sqlx::query(&format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE project_id = $1 AND kind = $2 AND id = $3"
    ))
    .bind(project_id)
    .bind(kind.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(entity_from_row).transpose()
}

pub(super) async fn entities(
    pool: &AnyPool,
    project_id: ProjectId,
    kind: EntityKind,
) -> Result<Vec<Entity>, MetaError> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE project_id = $1 AND kind = $2 ORDER BY id"
    ))
    .bind(project_id)
    .bind(kind.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter().map(entity_from_row).collect()
}

pub(super) async fn replace_entity(
    pool: &AnyPool,
    id: i64,
    entity: EntityWrite,
) -> Result<Option<Entity>, MetaError> {
    let row = sqlx::query(&format!(
        "UPDATE entities SET unique_key = $4, body = $5, updated_at = $6
         WHERE project_id = $1 AND kind = $2 AND id = $3 RETURNING {ENTITY_COLUMNS}"
    ))
    .bind(entity.project_id)
    .bind(entity.kind.as_str())
    .bind(id)
    .bind(entity.unique_key.as_deref())
    .bind(entity.body.to_string())
    .bind(now_rfc3339())
    .fetch_optional(pool)
    .await
    .map_err(|e| {
        MetaError::conflict_or(e, entity.kind.as_str(), taken(entity.kind, entity.unique_key.as_deref()))
    })?;
    row.as_ref().map(entity_from_row).transpose()
}

pub(super) async fn delete_entity(
    pool: &AnyPool,
    project_id: ProjectId,
    kind: EntityKind,
    id: i64,
) -> Result<bool, MetaError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("DELETE FROM entities WHERE project_id = $1 AND kind = $2 AND id = $3")
        .bind(project_id)
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if kind == EntityKind::Cohort {
        clear_cohort_people(&mut tx, project_id, id).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

async fn clear_cohort_people(
    tx: &mut Transaction<'_, Any>,
    project_id: ProjectId,
    cohort_id: i64,
) -> Result<(), MetaError> {
    sqlx::query("DELETE FROM static_cohort_people WHERE project_id = $1 AND cohort_id = $2")
        .bind(project_id)
        .bind(cohort_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn set_cohort_people(
    pool: &AnyPool,
    dialect: Dialect,
    project_id: ProjectId,
    cohort_id: i64,
    people: &[Uuid],
) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    clear_cohort_people(&mut tx, project_id, cohort_id).await?;
    let mut people: Vec<String> = people.iter().map(Uuid::to_string).collect();
    people.sort_unstable();
    people.dedup();
    for chunk in super::persons::chunks(dialect, &people, 3) {
        let sql = format!(
            "INSERT INTO static_cohort_people (project_id, cohort_id, person_uuid) VALUES {}",
            value_rows(3, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for person in chunk {
            query = query.bind(project_id).bind(cohort_id).bind(person.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn cohort_people(
    pool: &AnyPool,
    project_id: ProjectId,
    cohort_id: i64,
) -> Result<Vec<Uuid>, MetaError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT person_uuid FROM static_cohort_people WHERE project_id = $1 AND cohort_id = $2 ORDER BY person_uuid",
    )
    .bind(project_id)
    .bind(cohort_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|v| v.parse().map_err(|e| MetaError::Corrupt { what: "uuid", reason: format!("{v:?}: {e}") }))
        .collect()
}

pub(super) async fn in_static_cohort(
    pool: &AnyPool,
    project_id: ProjectId,
    cohort_id: i64,
    person: Uuid,
) -> Result<bool, MetaError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM static_cohort_people WHERE project_id = $1 AND cohort_id = $2 AND person_uuid = $3",
    )
    .bind(project_id)
    .bind(cohort_id)
    .bind(person.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Upserts definitions inside an ingest commit: an event's first sighting
/// stays, its last moves forward; a property keeps the type it was first
/// seen with, as PostHog does.
pub(super) async fn record_definitions(
    tx: &mut Transaction<'_, Any>,
    dialect: Dialect,
    events: &[EventDefinition],
    properties: &[PropertyDefinition],
) -> Result<(), MetaError> {
    for chunk in super::persons::chunks(dialect, events, 4) {
        let sql = format!(
            "INSERT INTO event_definitions (team_id, name, first_seen_us, last_seen_us) VALUES {}
             ON CONFLICT (team_id, name) DO UPDATE SET
                 first_seen_us = CASE WHEN excluded.first_seen_us < event_definitions.first_seen_us
                                      THEN excluded.first_seen_us ELSE event_definitions.first_seen_us END,
                 last_seen_us = CASE WHEN excluded.last_seen_us > event_definitions.last_seen_us
                                     THEN excluded.last_seen_us ELSE event_definitions.last_seen_us END",
            value_rows(4, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for definition in chunk {
            query = query
                .bind(definition.team_id)
                .bind(definition.name.as_str())
                .bind(definition.first_seen_us)
                .bind(definition.last_seen_us);
        }
        query.execute(&mut **tx).await?;
    }
    for chunk in super::persons::chunks(dialect, properties, 6) {
        let sql = format!(
            "INSERT INTO property_definitions (team_id, kind, group_type_index, name, property_type, first_seen_us)
             VALUES {} ON CONFLICT (team_id, kind, group_type_index, name) DO NOTHING",
            value_rows(6, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for definition in chunk {
            query = query
                .bind(definition.team_id)
                .bind(definition.kind.as_str())
                .bind(i64::from(definition.group_type_index))
                .bind(definition.name.as_str())
                .bind(definition.property_type.as_deref())
                .bind(definition.first_seen_us);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) async fn event_definitions(
    pool: &AnyPool,
    team_id: i64,
) -> Result<Vec<EventDefinition>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, name, first_seen_us, last_seen_us FROM event_definitions WHERE team_id = $1 ORDER BY name",
    )
    .bind(team_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(EventDefinition {
                team_id: int(row, "team_id")?,
                name: text(row, "name")?,
                first_seen_us: int(row, "first_seen_us")?,
                last_seen_us: int(row, "last_seen_us")?,
            })
        })
        .collect()
}

pub(super) async fn property_definitions(
    pool: &AnyPool,
    team_id: i64,
) -> Result<Vec<PropertyDefinition>, MetaError> {
    let rows = sqlx::query(
        "SELECT team_id, kind, group_type_index, name, property_type, first_seen_us FROM property_definitions
         WHERE team_id = $1 ORDER BY kind, group_type_index, name",
    )
    .bind(team_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PropertyDefinition {
                team_id: int(row, "team_id")?,
                kind: PropertyKind::parse(&text(row, "kind")?)?,
                group_type_index: i32::try_from(int(row, "group_type_index")?)
                    .map_err(|e| MetaError::Corrupt { what: "group type index", reason: e.to_string() })?,
                name: text(row, "name")?,
                property_type: sqlx::Row::try_get(row, "property_type")?,
                first_seen_us: int(row, "first_seen_us")?,
            })
        })
        .collect()
}
