//! Operations on a deployment's stores, as the `warren` binary's chores run
//! them: each reads and writes the stores through their ports and
//! adapters, reports its progress through a callback, verifies what it did,
//! and can be stopped anywhere and run again.
//!
//! [`clickhouse`] rebuilds a ClickHouse cluster from the canonical Delta
//! table and the meta store's persons, and verifies it (`warren clickhouse`).
//! [`backup`] takes, lists, verifies and deletes backups, and restores
//! them (`warren backup`, `warren restore`).
//! [`deploy`] writes the files that run Warren on Kubernetes, systemd,
//! compose and cloud-init (`warren deploy`).
//! [`doctor`] checks a deployment and says what to fix (`warren doctor`);
//! [`support`] packs what a support request needs, secrets scrubbed
//! (`warren support bundle`); [`upgrade`] says what running this build
//! on a deployment will change, and refuses a downgrade (`warren upgrade
//! check`).
//! Errors are [`OpsError`].

pub mod backup;
pub mod clickhouse;
pub mod deploy;
pub mod doctor;
mod error;
pub mod support;
pub mod upgrade;

pub use error::OpsError;
