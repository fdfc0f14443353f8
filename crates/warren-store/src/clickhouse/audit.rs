//! What operations check a cluster with: each day's rows and checksum
//! ([`DayDigest`], comparable with the Delta table's), and rows kept on a
//! shard other than the one their sharding key names.

use std::ops::RangeInclusive;

use chrono::NaiveDate;

use super::{parse_count, quote, ClickHouseStore};
use crate::digest::{Cut, DayDigest, FINGERPRINT_SQL};
use crate::StoreError;

/// Rows a shard holds that its sharding key sends elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    /// The shard's number in the cluster's `remote_servers`.
    pub shard: u32,
    /// The server that was asked.
    pub host: String,
    pub rows: u64,
}

impl ClickHouseStore {
    /// Rows and checksum (one row per uuid) of every day the cluster
    /// holds, or of one, oldest first, of the rows `cut` takes; for a
    /// window of received times ([`Cut::ReceivedBetween`]), one row per
    /// content instead.
    pub async fn day_digests(&self, day: Option<NaiveDate>, cut: Cut) -> Result<Vec<DayDigest>, StoreError> {
        self.digests_of(day.map(|day| day..=day), cut).await
    }

    /// The same for the days from `days`' first to its last, in one read.
    pub async fn day_digests_between(
        &self,
        days: RangeInclusive<NaiveDate>,
        cut: Cut,
    ) -> Result<Vec<DayDigest>, StoreError> {
        self.digests_of(Some(days), cut).await
    }

    async fn digests_of(
        &self,
        days: Option<RangeInclusive<NaiveDate>>,
        cut: Cut,
    ) -> Result<Vec<DayDigest>, StoreError> {
        let (table, filter) = (self.table("events"), filter(days, cut));
        let sql = match cut {
            // A window of received times takes few rows, found by
            // `created_at_us` before any other column is read — which
            // FINAL would prevent. Copies of a row count once when equal
            // and each when not (FINAL would keep one): such a day differs
            // from the Delta table, and its caller compares it whole.
            Cut::ReceivedBetween(..) => format!(
                "SELECT day, count(), sum(fingerprint) FROM (SELECT DISTINCT toYYYYMMDD(timestamp) AS day, \
                 {FINGERPRINT_SQL} AS fingerprint FROM {table} {filter}) GROUP BY day ORDER BY day FORMAT TSV"
            ),
            // Not `toDate`: 18.16 refuses a FINAL read grouped by an
            // expression of its sort key.
            Cut::All | Cut::ReceivedBefore(_) => format!(
                "SELECT toYYYYMMDD(timestamp) AS day, count(), sum({FINGERPRINT_SQL}) FROM {table} FINAL {filter} \
                 GROUP BY day ORDER BY day FORMAT TSV"
            ),
        };
        let text = self.client.execute(&sql, None).await?;
        text.lines().filter(|line| !line.is_empty()).map(parse_digest).collect()
    }

    /// Rows (one per uuid) per day of the rows `cut` takes, oldest first:
    /// read without their content.
    pub async fn day_counts(&self, cut: Cut) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let sql = format!(
            // Not `toDate`: 18.16 refuses a FINAL read grouped by an
            // expression of its sort key.
            "SELECT toYYYYMMDD(timestamp) AS day, count() FROM {} FINAL {} GROUP BY day ORDER BY day FORMAT TSV",
            self.table("events"),
            filter(None, cut)
        );
        let text = self.client.execute(&sql, None).await?;
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                let parsed = line.split_once('\t').and_then(|(day, count)| {
                    Some((NaiveDate::parse_from_str(day, "%Y%m%d").ok()?, count.trim().parse().ok()?))
                });
                parsed.ok_or_else(|| {
                    StoreError::ClickHouse(format!("a day's count that does not read: {line:?}"))
                })
            })
            .collect()
    }

    /// Per shard, the rows (one per uuid) whose sharding key names another
    /// shard: all zero on a cluster whose rows all came through its
    /// Distributed table. One server per shard is asked.
    pub async fn misplaced_rows(&self) -> Result<Vec<Misplaced>, StoreError> {
        let cluster = quote(&self.options.url.cluster);
        // The Distributed table sends a row to the shard owning slot
        // `key % total weight`, slots dealt to shards in their order.
        let sql = format!(
            "SELECT shard_num, any(shard_weight) FROM system.clusters WHERE cluster = {cluster} \
             GROUP BY shard_num ORDER BY shard_num FORMAT TSV"
        );
        let mut slots: Vec<u32> = Vec::new();
        for line in self.client.execute(&sql, None).await?.lines().filter(|l| !l.is_empty()) {
            let parsed = line.split_once('\t').and_then(|(shard, weight)| {
                Some((shard.trim().parse::<u32>().ok()?, weight.trim().parse::<usize>().ok()?))
            });
            let (shard, weight) = parsed.ok_or_else(|| {
                StoreError::ClickHouse(format!("a line of system.clusters that does not read: {line:?}"))
            })?;
            slots.extend(std::iter::repeat_n(shard, weight));
        }
        if slots.is_empty() {
            return Err(StoreError::ClickHouse(format!("the servers know no cluster {cluster}")));
        }
        let mut found = Vec::new();
        for host in self.client.one_host_per_shard().await? {
            let sql = format!(
                "SELECT shard_num FROM system.clusters WHERE cluster = {cluster} AND is_local FORMAT TSV"
            );
            let text = self.client.execute_on(&host.url, &sql, None).await?;
            let shard: u32 = text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| {
                StoreError::ClickHouse(format!(
                    "{} does not find itself in cluster {cluster} (system.clusters has no local entry)",
                    host.url
                ))
            })?;
            let owned: Vec<String> = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == shard)
                .map(|(slot, _)| slot.to_string())
                .collect();
            // A shard of weight 0 owns no slot: any row on it is misplaced.
            let misplaced = match owned.is_empty() {
                true => "1".to_string(),
                false => format!("sipHash64(distinct_id) % {} NOT IN ({})", slots.len(), owned.join(", ")),
            };
            let sql = format!(
                "SELECT count() FROM {} FINAL WHERE {misplaced} FORMAT TSV",
                self.table("sharded_events")
            );
            let rows = parse_count(&self.client.execute_on(&host.url, &sql, None).await?)?;
            found.push(Misplaced { shard, host: host.url, rows });
        }
        Ok(found)
    }
}

/// The `WHERE` clause (or nothing) taking the rows of `days` (of every
/// day when `None`) that `cut` takes.
fn filter(days: Option<RangeInclusive<NaiveDate>>, cut: Cut) -> String {
    let mut conditions = Vec::new();
    if let Some(days) = days {
        let number = |day: &NaiveDate| day.format("%Y%m%d").to_string();
        conditions.push(format!(
            "toYYYYMMDD(timestamp) BETWEEN {} AND {}",
            number(days.start()),
            number(days.end())
        ));
    }
    let (from, before) = cut.bounds();
    conditions.extend(from.map(|us| format!("created_at_us >= {us}")));
    conditions.extend(before.map(|us| format!("created_at_us < {us}")));
    match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    }
}

fn parse_digest(line: &str) -> Result<DayDigest, StoreError> {
    let mut fields = line.split('\t');
    let parsed = (|| {
        let day = NaiveDate::parse_from_str(fields.next()?, "%Y%m%d").ok()?;
        let rows = fields.next()?.trim().parse().ok()?;
        let checksum = fields.next()?.trim().parse().ok()?;
        Some(DayDigest { day, rows, checksum })
    })();
    parsed.ok_or_else(|| StoreError::ClickHouse(format!("a day's digest that does not read: {line:?}")))
}
