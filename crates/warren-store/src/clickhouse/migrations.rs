//! The ClickHouse migration runner: versioned migrations of ordered
//! operations, each with its rollback, run under a lock that outlives the
//! process, with every operation's state kept in the meta store (through the
//! [`MigrationLedger`] port) so a run
//! that is killed resumes at the operation it was on.
//!
//! An operation's statement goes to every server or to one per shard
//! (`system.macros` and `system.clusters` say which is which). One that
//! starts a mutation (`ALTER … UPDATE|DELETE`) is followed until no
//! mutation of the database is pending on any server; resumed, it waits
//! for an identical mutation still pending instead of sending it again.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use warren_core::ports::{MigrationLedger, OperationRecord, OperationState};

use super::client::{quote, Client, Host};
use crate::lease::Lease;
use crate::StoreError;

/// Where an operation's statement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// Every server named in the URL; all must answer.
    Every,
    /// One answering server per shard: replication carries it to the rest.
    OnePerShard,
}

/// One step of a migration.
#[derive(Debug, Clone)]
pub struct Operation {
    pub description: String,
    pub on: Hosts,
    pub forward: String,
    /// What undoes it; `None` when there is nothing to undo.
    pub rollback: Option<String>,
    /// Whether `forward` starts a mutation to wait for.
    pub awaits_mutations: bool,
}

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub operations: Vec<Operation>,
}

/// One operation as `warren migrate status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperationStatus {
    pub version: u32,
    pub migration: &'static str,
    pub operation: u32,
    pub description: String,
    pub state: OperationState,
    pub error: Option<String>,
    /// It starts a mutation, which rewrites the parts it touches: on a
    /// large cluster it runs for hours (`warren upgrade check` says so).
    pub rewrites_data: bool,
}

/// Runs `migrations` on one database of a cluster.
pub struct Migrator<'a> {
    client: &'a Client,
    ledger: &'a dyn MigrationLedger,
    migrations: Vec<Migration>,
    mutation_timeout: Duration,
    /// How long the lock outlives a runner that stops renewing it (one
    /// that was killed); renewed three times as often while running.
    lease: Duration,
}

impl<'a> Migrator<'a> {
    pub fn new(
        client: &'a Client,
        ledger: &'a dyn MigrationLedger,
        migrations: Vec<Migration>,
        mutation_timeout: Duration,
        lease: Duration,
    ) -> Self {
        Self { client, ledger, migrations, mutation_timeout, lease }
    }

    /// The meta store's name for this database's migrations.
    fn scope(&self) -> String {
        format!("clickhouse/{}", self.client.url().database)
    }

    fn lock_name(&self) -> String {
        format!("migrate:{}", self.scope())
    }

    /// Every operation of every migration, with its recorded state.
    async fn plan(&self) -> Result<Vec<(OperationStatus, &Operation)>, StoreError> {
        let records = self.ledger.migration_operations(&self.scope()).await?;
        let recorded = |version: u32, operation: u32| -> Option<&OperationRecord> {
            records.iter().find(|r| r.version == version && r.operation == operation)
        };
        let mut out = Vec::new();
        for migration in &self.migrations {
            for (index, operation) in migration.operations.iter().enumerate() {
                let record = recorded(migration.version, index as u32);
                let status = OperationStatus {
                    version: migration.version,
                    migration: migration.name,
                    operation: index as u32,
                    description: operation.description.clone(),
                    state: record.map_or(OperationState::NotStarted, |r| r.state),
                    error: record.and_then(|r| r.error.clone()),
                    rewrites_data: operation.awaits_mutations,
                };
                out.push((status, operation));
            }
        }
        Ok(out)
    }

    /// Every operation of every migration with its recorded state.
    pub async fn status(&self) -> Result<Vec<OperationStatus>, StoreError> {
        Ok(self.plan().await?.into_iter().map(|(status, _)| status).collect())
    }

    /// Whether every operation is completed.
    pub async fn is_current(&self) -> Result<bool, StoreError> {
        Ok(self.status().await?.iter().all(|op| op.state == OperationState::Completed))
    }

    /// Runs every operation not yet completed, in order. `progress` hears
    /// of each one done and may stop the run there (`Break`); the next run
    /// goes on from the following operation.
    pub async fn up(
        &self,
        mut progress: impl FnMut(&OperationStatus) -> ControlFlow<()>,
    ) -> Result<usize, StoreError> {
        self.locked(async {
            let mut done = 0;
            for (status, operation) in self.plan().await? {
                if status.state == OperationState::Completed {
                    continue;
                }
                let resumed = status.state == OperationState::Running;
                self.record(&status, OperationState::Running, None).await?;
                match self.run(operation, &operation.forward, resumed).await {
                    Ok(()) => self.record(&status, OperationState::Completed, None).await?,
                    Err(error) => {
                        self.record(&status, OperationState::Errored, Some(&error.to_string())).await?;
                        return Err(StoreError::ClickHouse(format!(
                            "migration {} ({}), operation {} ({}): {error}",
                            status.version, status.migration, status.operation, status.description
                        )));
                    }
                }
                done += 1;
                let finished = OperationStatus { state: OperationState::Completed, ..status };
                if progress(&finished).is_break() {
                    break;
                }
            }
            Ok(done)
        })
        .await
    }

    /// Undoes the migrations after `to_version`, newest first, each
    /// operation in reverse; one never started is skipped.
    pub async fn down(
        &self,
        to_version: u32,
        mut progress: impl FnMut(&OperationStatus) -> ControlFlow<()>,
    ) -> Result<usize, StoreError> {
        self.locked(async {
            let mut undone = 0;
            let mut plan = self.plan().await?;
            plan.reverse();
            for (status, operation) in plan {
                let started =
                    !matches!(status.state, OperationState::NotStarted | OperationState::RolledBack);
                if status.version <= to_version || !started {
                    continue;
                }
                if let Some(rollback) = &operation.rollback {
                    let result = self.run(operation, rollback, false).await;
                    if let Err(error) = result {
                        self.record(
                            &status,
                            OperationState::Errored,
                            Some(&format!("rolling back: {error}")),
                        )
                        .await?;
                        return Err(StoreError::ClickHouse(format!(
                            "rolling back migration {}, operation {}: {error}",
                            status.version, status.operation
                        )));
                    }
                }
                self.record(&status, OperationState::RolledBack, None).await?;
                undone += 1;
                let finished = OperationStatus { state: OperationState::RolledBack, ..status };
                if progress(&finished).is_break() {
                    break;
                }
            }
            Ok(undone)
        })
        .await
    }

    async fn record(
        &self,
        status: &OperationStatus,
        state: OperationState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.ledger.record_operation(&self.scope(), status.version, status.operation, state, error).await?;
        Ok(())
    }

    /// Renews the lock every third of its lease until another runner has
    /// it, or until the meta store has refused renewals for two thirds of
    /// a lease (so the lock cannot have lapsed while work went on).
    /// Runs `work` holding the lock, waiting for it as long as a mutation
    /// may take when another runner has it (see [`Lease`]).
    async fn locked<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        Lease::new(self.ledger, self.lock_name(), "migration", self.lease)
            .run(self.mutation_timeout, work)
            .await
    }

    async fn run(&self, operation: &Operation, sql: &str, resumed: bool) -> Result<(), StoreError> {
        let hosts: Vec<Host> = match operation.on {
            Hosts::Every => self.client.every_host().await?,
            Hosts::OnePerShard => self.client.one_host_per_shard().await?,
        };
        let database = &self.client.url().database;
        for host in &hosts {
            if operation.awaits_mutations
                && resumed
                && pending_like(self.client, &host.url, database, sql).await?
            {
                tracing::info!(host = %host.url, "the mutation a killed run sent is still running; waiting for it");
                continue;
            }
            self.client.execute_on(&host.url, sql, None).await?;
        }
        if operation.awaits_mutations {
            await_mutations(self.client, database, self.mutation_timeout).await?;
        }
        Ok(())
    }
}

/// Whether `host` runs a mutation of `database` whose command is the one
/// `sql` sends (compared without case, spacing and quoting).
async fn pending_like(client: &Client, host: &str, database: &str, sql: &str) -> Result<bool, StoreError> {
    let normal = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '`' && *c != '"')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = normal(sql);
    let pending = client
        .execute_on(
            host,
            &format!(
                "SELECT command FROM system.mutations WHERE database = {} AND is_done = 0 FORMAT TSV",
                quote(database)
            ),
            None,
        )
        .await?;
    Ok(pending.lines().any(|command| {
        let command = normal(&command.replace("\\'", "'"));
        !command.is_empty() && wanted.ends_with(&command)
    }))
}

/// Waits until no mutation of `database` is pending on any server that
/// answers.
pub(super) async fn await_mutations(
    client: &Client,
    database: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + timeout;
    let sql = format!(
        "SELECT count() FROM system.mutations WHERE database = {} AND is_done = 0 FORMAT TSV",
        quote(database)
    );
    for host in client.answering_hosts().await? {
        loop {
            let pending = client.execute_on(&host.url, &sql, None).await?;
            if pending.trim() == "0" {
                break;
            }
            if Instant::now() > deadline {
                return Err(StoreError::ClickHouse(format!(
                    "mutations still pending on {} after {timeout:?}",
                    host.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
