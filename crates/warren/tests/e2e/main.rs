//! End-to-end tests: the real `warren` binary on loopback, driven by the
//! official SDKs, by raw HTTP and by a real browser, with its event log and
//! events table read back afterwards.

mod accounts;
mod backup;
mod bad_input;
mod clickhouse;
mod clickhouse_ops;
mod connections;
mod crash;
mod dashboard;
mod deploy;
mod differential;
mod doctor;
mod durability;
mod expect;
mod flags;
mod ingest;
mod lifecycle;
mod overload;
mod point_in_time;
mod query;
mod sdk;
mod support;
mod upgrade;

use std::path::PathBuf;

pub const BIN: &str = env!("CARGO_BIN_EXE_warren");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("HTTP client")
}
