//! The embedded backend: DataFusion over the Delta events table.
//!
//! Each query gets a fresh session that can see one project only: `events`
//! is a view of the Delta table filtered to the project, with `person_id`
//! already resolved through the project's person-id overrides; `groups`
//! and (for SQL that names it) `persons` hold the project's rows from the
//! meta store. Every session shares one runtime environment, so the memory
//! limit holds across concurrent queries, and sorts and aggregations spill
//! to disk before they fail.

mod cells;
mod funnel;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use warren_core::person::Person;
use warren_meta::PersonStore;
use warren_store::arrow::array::{ArrayRef, StringArray};
use warren_store::arrow::datatypes::DataType;
use warren_store::datafusion::common::DataFusionError;
use warren_store::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use warren_store::datafusion::execution::FunctionRegistry;
use warren_store::datafusion::execution::SendableRecordBatchStream;
use warren_store::datafusion::logical_expr::{create_udf, AggregateUDF, ColumnarValue, Volatility};
use warren_store::datafusion::prelude::{col, lit, SessionConfig, SessionContext};
use warren_store::datafusion::sql::parser::DFParser;
use warren_store::{register_person_tables, DeltaStore};

use super::{QueryBackend, Rows};
use crate::hogql::SqlQuery;
use crate::plan::Select;
use crate::project::ProjectContext;
use crate::render::datafusion::{DataFusionDialect, EVENTS_TABLE};
use crate::render::Dialect;
use crate::QueryError;

/// The scalar function the `events` view resolves `person_id` with.
const PERSON_ID_FUNCTION: &str = "warren_person_id";
const STORED_PERSON_ID: &str = "stored_person_id";

/// What a query may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Rows one SQL query may return; more are cut and flagged.
    pub max_rows: usize,
    /// Memory all running queries may hold together before spilling, then
    /// failing.
    pub memory_bytes: usize,
    /// Parallelism of one query.
    pub target_partitions: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self { max_rows: 10_000, memory_bytes: 2 << 30, target_partitions: 2 }
    }
}

pub struct DataFusionBackend {
    store: Arc<DeltaStore>,
    meta: Arc<dyn PersonStore>,
    runtime: Arc<RuntimeEnv>,
    limits: QueryLimits,
}

/// What a query does with the rows it reads, as far as tuning it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlanShape {
    /// A bounded list of events (see [`Select::lists_events`]).
    EventList,
    Other,
}

impl std::fmt::Debug for DataFusionBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFusionBackend").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl DataFusionBackend {
    pub fn new(
        store: Arc<DeltaStore>,
        meta: Arc<dyn PersonStore>,
        limits: QueryLimits,
    ) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(engine)?;
        Ok(Self { store, meta, runtime, limits })
    }

    /// A session that sees `project` only.
    async fn session(
        &self,
        project: &ProjectContext,
        with_persons: bool,
        shape: PlanShape,
    ) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new()
            .with_target_partitions(self.limits.target_partitions.max(1))
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.enable_ident_normalization", "false")
            // Filtering inside the Parquet reader skips decoding the other
            // columns of rows that fail it: a large win where few rows are
            // kept, a small cost where most are (the aggregates).
            .set_bool("datafusion.execution.parquet.pushdown_filters", shape == PlanShape::EventList)
            .set_bool("datafusion.execution.parquet.reorder_filters", shape == PlanShape::EventList);
        let mut ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        datafusion_functions_json::register_all(&mut ctx).map_err(engine)?;
        ctx.register_udaf(AggregateUDF::from(funnel::FunnelAggregate::new()));

        let overrides = self.meta.person_overrides(project.team_id).await?;
        let map: HashMap<String, String> = overrides
            .into_iter()
            .map(|o| (o.old_person_id.to_string(), o.override_person_id.to_string()))
            .collect();
        ctx.register_udf(person_id_function(Arc::new(map)));

        let table = self.store.table_provider().await?;
        let all_events = ctx.read_table(table).map_err(engine)?;
        let names: Vec<String> = all_events.schema().fields().iter().map(|f| f.name().clone()).collect();
        // The stored id is renamed first: an output named like the column
        // it is computed from trips DataFusion's distinct-aggregate rewrite.
        let renamed = names
            .iter()
            .map(|name| {
                let column = warren_store::datafusion::prelude::ident(name);
                if name == "person_id" {
                    column.alias(STORED_PERSON_ID)
                } else {
                    column
                }
            })
            .collect::<Vec<_>>();
        let person_id = ctx.udf(PERSON_ID_FUNCTION).map_err(engine)?;
        let resolved = names
            .iter()
            .map(|name| {
                if name == "person_id" {
                    person_id
                        .call(vec![warren_store::datafusion::prelude::ident(STORED_PERSON_ID)])
                        .alias("person_id")
                } else {
                    warren_store::datafusion::prelude::ident(name)
                }
            })
            .collect::<Vec<_>>();
        let events = all_events
            .filter(col("team_id").eq(lit(project.team_id)))
            .and_then(|df| df.select(renamed))
            .and_then(|df| df.select(resolved))
            .map_err(engine)?;
        ctx.register_table(EVENTS_TABLE, events.into_view()).map_err(engine)?;

        let groups = self.meta.groups(project.team_id).await?;
        let persons = if with_persons {
            project_persons(self.meta.as_ref(), project.team_id).await?
        } else {
            Vec::new()
        };
        register_person_tables(&ctx, &persons, &[], &groups)?;
        Ok(ctx)
    }

    async fn collect(&self, stream: SendableRecordBatchStream, max_rows: usize) -> Result<Rows, QueryError> {
        use futures_util::StreamExt;
        let schema = stream.schema();
        let mut rows = Rows {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            types: schema.fields().iter().map(|f| f.data_type().to_string()).collect(),
            ..Rows::default()
        };
        let mut stream = stream;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(engine)?;
            for row in 0..batch.num_rows() {
                if rows.rows.len() == max_rows {
                    rows.truncated = true;
                    return Ok(rows);
                }
                rows.rows.push(batch.columns().iter().map(|c| cells::cell(c.as_ref(), row)).collect());
            }
        }
        Ok(rows)
    }
}

/// `warren_person_id(person_id)`: the person a stored id now belongs to.
fn person_id_function(
    overrides: Arc<HashMap<String, String>>,
) -> warren_store::datafusion::logical_expr::ScalarUDF {
    create_udf(
        PERSON_ID_FUNCTION,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let Some(ColumnarValue::Array(ids)) = args.first() else {
                return Ok(args.first().cloned().unwrap_or(ColumnarValue::Scalar(
                    warren_store::datafusion::common::ScalarValue::Utf8(None),
                )));
            };
            if overrides.is_empty() {
                return Ok(ColumnarValue::Array(ids.clone()));
            }
            let ids = ids
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Execution("person_id must be text".into()))?;
            let resolved: StringArray =
                ids.iter().map(|id| id.map(|id| overrides.get(id).map_or(id, String::as_str))).collect();
            Ok(ColumnarValue::Array(Arc::new(resolved) as ArrayRef))
        }),
    )
}

fn engine(error: DataFusionError) -> QueryError {
    match error {
        DataFusionError::ResourcesExhausted(message) => QueryError::MemoryLimit(message),
        DataFusionError::Plan(message) | DataFusionError::SQL(_, Some(message)) => {
            QueryError::Invalid(message)
        }
        DataFusionError::Context(context, inner) => match engine(*inner) {
            QueryError::Invalid(m) => QueryError::Invalid(format!("{context}: {m}")),
            other => other,
        },
        other => QueryError::Engine(other.to_string()),
    }
}

#[async_trait]
impl QueryBackend for DataFusionBackend {
    async fn run(&self, project: &ProjectContext, select: &Select) -> Result<Rows, QueryError> {
        let sql = DataFusionDialect.render(select)?;
        tracing::debug!(team_id = project.team_id, %sql, "running plan");
        let shape = if select.lists_events() { PlanShape::EventList } else { PlanShape::Other };
        let ctx = self.session(project, false, shape).await?;
        let frame = ctx.sql(&sql).await.map_err(|e| QueryError::Engine(format!("{e} in {sql}")))?;
        let stream = frame.execute_stream().await.map_err(engine)?;
        // Plans bound their own size; the cap only guards against a bug.
        self.collect(stream, 10_000_000).await
    }

    async fn run_sql(&self, project: &ProjectContext, query: &SqlQuery) -> Result<Rows, QueryError> {
        let sql = query.render(&DataFusionDialect)?;
        // A second check by DataFusion's own parser: one read-only statement.
        DFParser::parse_sql(&sql).map_err(|e| QueryError::invalid(e.to_string()))?;
        let ctx = self.session(project, query.reads_persons(), PlanShape::Other).await?;
        let options = warren_store::datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        // Anything planning finds wrong in a user's SQL is theirs to fix.
        let frame = ctx.sql_with_options(&sql, options).await.map_err(|e| match engine(e) {
            QueryError::Engine(message) => QueryError::Invalid(message),
            other => other,
        })?;
        let stream = frame.execute_stream().await.map_err(engine)?;
        self.collect(stream, self.limits.max_rows).await
    }
}

impl SqlQuery {
    fn reads_persons(&self) -> bool {
        self.tables().iter().any(|t| t == "persons")
    }
}

/// Every person of a project, page by page from the meta store.
async fn project_persons(meta: &dyn PersonStore, team_id: i64) -> Result<Vec<Person>, QueryError> {
    const PAGE: u32 = 10_000;
    let mut persons = Vec::new();
    let mut after = None;
    loop {
        let page = meta.persons(team_id, after, PAGE).await?;
        let done = page.len() < PAGE as usize;
        after = page.last().map(|p| p.uuid);
        persons.extend(page);
        if done {
            return Ok(persons);
        }
    }
}
