//! `HogQLQuery`: users' SQL, checked and run with the row limit.

use serde_json::{json, Value};

use crate::backend::{Cell, QueryBackend};
use crate::hogql::SqlQuery;
use crate::model::HogQlQuery;
use crate::project::ProjectContext;
use crate::QueryError;

pub async fn run(
    query: &HogQlQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let sql = SqlQuery::parse(&query.query)?;
    let rows = backend.run_sql(project, &sql).await?;
    Ok(json!({
        "columns": rows.columns,
        "types": rows.types,
        "results": rows.rows.iter().map(|r| r.iter().map(Cell::to_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "hasMore": rows.truncated,
        "hogql": query.query,
        "timezone": project.time_zone.name(),
        "is_cached": false,
    }))
}
