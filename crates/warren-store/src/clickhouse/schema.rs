//! The tables on the cluster, after PostHog's layout: a replicated
//! table per shard (`sharded_events`) and two Distributed tables over it,
//! `events` for reads and `writable_events` for writes, sharded by
//! distinct id so one person's events meet on one shard; and the person
//! tables (`persons`, `person_distinct_id`, `person_overrides`), whole on
//! every server (one replicated table over all of them, not sharded), since
//! any shard's events may need any person. Each keeps every version of a
//! row; readers take the newest with `argMax(…, version)`.
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
//!   ("column already exists"): days are grouped by `toYYYYMMDD`;
//! - a replacing engine's version must be unsigned: versions are `UInt64`.
//!
//! The schema is made and changed only by the migrations below, which
//! [`super::migrations`] runs. Every statement says `IF [NOT] EXISTS`, so
//! running one again after a killed run is harmless.

use super::migrations::{Hosts, Migration, Operation};

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

/// The person tables: name, columns, sort key. `version` grows with every
/// change of a row's key; `is_deleted` marks a person merged away.
const PERSON_TABLES: [(&str, &str, &str); 3] = [
    (
        "persons",
        "id UUID, team_id Int64, properties String, created_at_us Int64, is_identified UInt8, \
         is_deleted UInt8, version UInt64",
        "team_id, id",
    ),
    (
        "person_distinct_id",
        "team_id Int64, distinct_id String, person_id UUID, is_deleted UInt8, version UInt64",
        "team_id, distinct_id",
    ),
    (
        "person_overrides",
        "team_id Int64, old_person_id UUID, override_person_id UUID, version UInt64",
        "team_id, old_person_id",
    ),
];

/// Every migration of the events schema, in order. Each statement runs
/// on every server: the per-shard tables get their replica's macros there,
/// and Distributed tables exist on each server that reads or writes.
pub fn migrations(database: &str, cluster: &str) -> Vec<Migration> {
    let every = |description: &str, forward: String, rollback: String| Operation {
        description: description.to_string(),
        on: Hosts::Every,
        forward,
        rollback: Some(rollback),
        awaits_mutations: false,
    };
    // The Distributed tables in front of sharded_events.
    let distributed = |table: &str, purpose: &str| {
        every(
            &format!("{table}, the Distributed table {purpose} go through"),
            format!(
                "CREATE TABLE IF NOT EXISTS {database}.{table} AS {database}.sharded_events
                 ENGINE = Distributed({cluster}, {database}, sharded_events, sipHash64(distinct_id))"
            ),
            format!("DROP TABLE IF EXISTS {database}.{table}"),
        )
    };
    let person_table = |(table, columns, key): (&str, &str, &str)| {
        every(
            &format!("{table}, replicated to every server"),
            format!(
                "CREATE TABLE IF NOT EXISTS {database}.{table} ({columns})
                 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/noshard/{database}.{table}',
                                                       '{{shard}}-{{replica}}', version)
                 ORDER BY ({key})"
            ),
            format!("DROP TABLE IF EXISTS {database}.{table}"),
        )
    };
    let events = Migration {
        version: 1,
        name: "events tables",
        operations: vec![
            every(
                "the database",
                format!("CREATE DATABASE IF NOT EXISTS {database}"),
                format!("DROP DATABASE IF EXISTS {database}"),
            ),
            every(
                "sharded_events, replicated per shard",
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.sharded_events ({COLUMNS})
                     ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}.sharded_events',
                                                           '{{replica}}', inserted_at_us)
                     PARTITION BY toYYYYMM(timestamp)
                     ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))
                     SAMPLE BY cityHash64(distinct_id)"
                ),
                format!("DROP TABLE IF EXISTS {database}.sharded_events"),
            ),
            distributed("events", "reads"),
            distributed("writable_events", "writes"),
        ],
    };
    let persons = Migration {
        version: 2,
        name: "person tables",
        operations: PERSON_TABLES.into_iter().map(person_table).collect(),
    };
    vec![events, persons]
}
