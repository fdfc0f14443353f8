//! One Warren process, wired from its configuration: what `warren serve`
//! runs, as a library the binary calls after parsing its arguments.
//!
//! [`adapters`] opens each port's adapter from the configuration (the event
//! log, the meta store, the Delta table, the ClickHouse cluster, the query
//! engine); the other commands of the binary open their stores with it
//! too. `bootstrap` creates a fresh deployment's project, keys and first
//! sign-in. [`serve`] starts the roles the configuration asks for — the
//! HTTP API with capture, ingest (`ingest`), queries, self-monitoring —
//! and runs every periodic chore through one runner (`tasks`), each with
//! its entry on the job board, the backups of `[backup]` among them
//! (`backups`); it returns once the shutdown future
//! resolves and everything has drained, the event log closed last.
//! Each process publishes its version, role and limits as metrics
//! (`process`), where `warren doctor` reads them.
//! Errors are [`NodeError`].

pub mod adapters;
mod backups;
mod bootstrap;
mod error;
mod ingest;
mod process;
mod serve;
mod tasks;

pub use bootstrap::bootstrap;
pub use error::NodeError;
pub use serve::serve;
