//! Copying events from another layout of the cluster (a reshard's source)
//! into this one, a run of days or all of them, by the servers themselves:
//! one `INSERT … SELECT … FROM remote()` that reads every shard of the
//! source over ClickHouse's native protocol and writes through this layout's Distributed table,
//! which deals each row to the shard its key names. Rows are copied as
//! stored, versions included, so the replacing engine keeps the same row
//! per uuid on both sides; copying a day twice changes nothing a `FINAL`
//! read sees.

use std::ops::RangeInclusive;

use chrono::NaiveDate;

use super::{quote, ClickHouseStore};
use crate::StoreError;

impl ClickHouseStore {
    /// Copies the rows of `days` (of every day when `None`) that `source`
    /// holds into this layout.
    pub async fn copy_from(
        &self,
        source: &ClickHouseStore,
        days: Option<RangeInclusive<NaiveDate>>,
    ) -> Result<(), StoreError> {
        let addresses = source.native_addresses().await?;
        let from = &source.options.url;
        let number = |day: &NaiveDate| day.format("%Y%m%d").to_string();
        let filter = days.map(|days| {
            format!(
                " WHERE toYYYYMMDD(timestamp) BETWEEN {} AND {}",
                number(days.start()),
                number(days.end())
            )
        });
        let sql = format!(
            "INSERT INTO {} SELECT * FROM remote({}, {}, sharded_events, {}, {}){}",
            self.table("writable_events"),
            quote(&addresses),
            quote(&from.database),
            quote(&from.user),
            quote(&from.password),
            filter.unwrap_or_default()
        );
        self.client.execute(&sql, None).await?;
        Ok(())
    }

    /// This layout's servers as `remote()` names them: the native
    /// protocol's `host:port` of each replica, `|` between the replicas of
    /// a shard and `,` between shards, from the servers' own
    /// `system.clusters`.
    async fn native_addresses(&self) -> Result<String, StoreError> {
        let sql = format!(
            "SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = {} \
             ORDER BY shard_num, replica_num FORMAT TSV",
            quote(&self.options.url.cluster)
        );
        let text = self.client.execute(&sql, None).await?;
        let mut shards: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines().filter(|line| !line.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [shard, host, port] = fields[..] else {
                return Err(StoreError::ClickHouse(format!(
                    "a line of system.clusters that does not read: {line:?}"
                )));
            };
            let address = format!("{host}:{port}");
            match shards.last_mut() {
                Some((last, replicas)) if last == shard => replicas.push(address),
                _ => shards.push((shard.to_string(), vec![address])),
            }
        }
        if shards.is_empty() {
            return Err(StoreError::ClickHouse(format!(
                "the servers know no cluster {:?}",
                self.options.url.cluster
            )));
        }
        Ok(shards.iter().map(|(_, replicas)| replicas.join("|")).collect::<Vec<_>>().join(","))
    }
}
