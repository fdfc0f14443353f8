//! The events tables on the cluster, after PostHog's layout: a replicated
//! table per shard (`sharded_events`) and two Distributed tables over it,
//! `events` for reads and `writable_events` for writes, sharded by
//! distinct id so one person's events meet on one shard.
//!
//! Choices forced by the oldest server Warren supports (Debian's 18.16),
//! kept here so a newer target can be chosen deliberately:
//! - no `DateTime64`: the exact time is `timestamp_us` (Int64, µs) beside
//!   `timestamp` (DateTime, seconds) that partitions, sorts and buckets;
//! - no `JSONExtract*`: properties are compact JSON text read with
//!   `visitParamExtract*`, which reads compact JSON only;
//! - no `LowCardinality` without an experimental setting: plain `String`;
//! - no `mutations_sync`: a delete waits on `system.mutations` itself;
//! - `cityHash64` takes no `UUID`: the sort key hashes the uuid's text;
//! - a `FINAL` read grouped by an expression of the sort key fails
//!   ("column already exists"): days are grouped by `toYYYYMMDD`.
//!
//! Every statement says `IF NOT EXISTS` and is sent to each server in
//! turn (the `{shard}` and `{replica}` macros are the server's own), so
//! running it again, or on a server added later, is harmless.

use super::client::{Client, Host};
use crate::StoreError;

/// The columns, in insert order. `inserted_at_us` is the version the
/// replacing engine keeps the newest row of a uuid by.
const COLUMNS: &str = "
    uuid UUID,
    event String,
    properties String,
    timestamp DateTime('UTC'),
    timestamp_us Int64,
    team_id Int64,
    distinct_id String,
    elements_chain String,
    created_at_us Int64,
    person_id UUID,
    person_properties String,
    person_created_at_us Int64,
    person_mode String,
    `$session_id` String,
    `$window_id` String,
    `$group_0` String,
    `$group_1` String,
    `$group_2` String,
    `$group_3` String,
    `$group_4` String,
    inserted_at_us UInt64";

/// The statements that make the schema on one server, in order.
fn statements(database: &str, cluster: &str) -> Vec<String> {
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {database}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.sharded_events ({COLUMNS})
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}.sharded_events',
                                                   '{{replica}}', inserted_at_us)
             PARTITION BY toYYYYMM(timestamp)
             ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))
             SAMPLE BY cityHash64(distinct_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.events AS {database}.sharded_events
             ENGINE = Distributed({cluster}, {database}, sharded_events, sipHash64(distinct_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.writable_events AS {database}.sharded_events
             ENGINE = Distributed({cluster}, {database}, sharded_events, sipHash64(distinct_id))"
        ),
    ]
}

/// Makes the schema on every server that answers.
pub async fn ensure(client: &Client) -> Result<Vec<Host>, StoreError> {
    let hosts = client.answering_hosts().await?;
    let url = client.url();
    for host in &hosts {
        for statement in statements(&url.database, &url.cluster) {
            client.execute_on(&host.url, &statement, None).await?;
        }
        tracing::debug!(host = %host.url, shard = %host.shard, replica = %host.replica, "events schema present");
    }
    Ok(hosts)
}
