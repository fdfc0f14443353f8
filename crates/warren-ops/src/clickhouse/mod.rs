//! Chores of the ClickHouse cluster beside the canonical Delta table
//! (`warren clickhouse …`).
//!
//! [`rebuild`] re-creates the cluster's tables from the Delta table and
//! the meta store's persons, verified day by day; [`verify`] compares a
//! cluster with the Delta table — each day's rows and an order-independent
//! checksum, and every row on the shard its key names; [`reshard`] moves
//! the cluster to a new layout while ingest and queries go on.

pub mod rebuild;
pub mod reshard;
pub mod verify;
