//! [`QueryEngine`]: what the API calls. It runs each query on its own
//! Tokio runtime, so a heavy query never slows capture's workers, under a
//! time limit, and stops the query's work when the caller goes away.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::backend::{Cell, QueryBackend};
use crate::model::Query;
use crate::plan::{Column, Expr, Select, Source};
use crate::project::ProjectContext;
use crate::QueryError;

pub struct QueryEngine {
    backend: Arc<dyn QueryBackend>,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// `threads` workers for queries alone; `timeout` per query.
    pub fn new(
        backend: Arc<dyn QueryBackend>,
        threads: usize,
        timeout: Duration,
    ) -> Result<Self, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("warren-query")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Engine(format!("starting the query runtime: {e}")))?;
        Ok(Self { backend, runtime: Some(runtime), timeout })
    }

    pub async fn run(&self, query: Query, project: ProjectContext) -> Result<Value, QueryError> {
        let backend = self.backend.clone();
        self.spawn(async move { crate::insights::run(&query, &project, backend.as_ref()).await }).await
    }

    /// The persons (uuids after merges) in cohort `cohort_id` of the
    /// project's catalog, at most `limit`.
    pub async fn cohort_members(
        &self,
        project: ProjectContext,
        cohort_id: i64,
        limit: u64,
    ) -> Result<Vec<String>, QueryError> {
        let backend = self.backend.clone();
        self.spawn(async move {
            let members = crate::catalog::cohort(&project, &Value::from(cohort_id))?;
            let select = Select::from(Source::Events)
                .column("person_id", Expr::col(Column::PersonId))
                .filter(Expr::col(Column::TeamId).eq(Expr::int(project.team_id)))
                .filter(members)
                .distinct()
                .order_by(Expr::name("person_id"), true)
                .limit(limit);
            let rows = backend.run(&project, &select).await?;
            Ok(rows
                .rows
                .iter()
                .filter_map(|row| row.first().and_then(Cell::as_str).map(str::to_string))
                .collect())
        })
        .await
    }

    /// Runs `work` on the query runtime under the time limit.
    async fn spawn<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let timeout = self.timeout;
        let work = async move {
            tokio::time::timeout(timeout, work).await.map_err(|_| QueryError::Timeout(timeout))?
        };
        let Some(runtime) = &self.runtime else {
            return Err(QueryError::Engine("the query runtime is stopped".into()));
        };
        // Dropping the guard (the caller went away) aborts the task, and
        // with it the plan's streams and their spawned partitions.
        let mut guard = AbortOnDrop(runtime.spawn(work));
        match (&mut guard.0).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(QueryError::Engine("the query hit a bug".into())),
            Err(_) => Err(QueryError::Engine("the query was cancelled".into())),
        }
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // A runtime may not be dropped from async code; let it wind down
        // on its own threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
