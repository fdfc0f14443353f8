//! Comparing a cluster with the canonical Delta table: every day's rows and
//! checksum on both sides, and every row on the shard its key names
//! (`warren clickhouse verify`, and the last step of the operations that
//! write a cluster).

use chrono::NaiveDate;
use warren_store::{ClickHouseStore, Cut, DayDigest, DeltaStore, Misplaced};

use super::rebuild::settled;
use crate::OpsError;

/// How far behind now a comparison of a live deployment stops taking
/// rows: ingest writes the cluster a moment after the Delta table, and
/// newer rows may be between the two writes.
pub const MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One day on both sides; `None` where a side holds none of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayComparison {
    pub day: NaiveDate,
    pub delta: Option<DayDigest>,
    pub cluster: Option<DayDigest>,
}

impl DayComparison {
    pub fn agrees(&self) -> bool {
        self.delta == self.cluster
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Every day either side holds, oldest first.
    pub days: Vec<DayComparison>,
    /// Per shard, rows its sharding key sends elsewhere.
    pub misplaced: Vec<Misplaced>,
}

impl Verification {
    /// Whether the cluster holds exactly the Delta table, each row where
    /// its key says.
    pub fn holds(&self) -> bool {
        self.days.iter().all(DayComparison::agrees) && self.misplaced.iter().all(|shard| shard.rows == 0)
    }
}

/// Compares every day over the rows `cut` takes. A day that differs is
/// compared again for a while before it counts as different: live ingest
/// writes the Delta table a moment before the cluster.
pub async fn verify(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    cut: Cut,
) -> Result<Verification, OpsError> {
    let ours = delta.day_digests(None, cut).await?;
    let theirs = clickhouse.day_digests(None, cut).await?;
    let mut days: Vec<NaiveDate> = ours.iter().chain(&theirs).map(|digest| digest.day).collect();
    days.sort_unstable();
    days.dedup();
    let mut compared = Vec::with_capacity(days.len());
    for day in days {
        let find = |digests: &[DayDigest]| digests.iter().find(|digest| digest.day == day).copied();
        let mut comparison = DayComparison { day, delta: find(&ours), cluster: find(&theirs) };
        if !comparison.agrees() {
            match settled(delta, clickhouse, day, cut).await {
                Ok(digest) => {
                    let digest = Some(digest).filter(|digest| digest.rows > 0);
                    comparison = DayComparison { day, delta: digest, cluster: digest };
                }
                Err(OpsError::Verification(_)) => {
                    comparison = DayComparison {
                        day,
                        delta: delta.day_digests(Some(day), cut).await?.pop(),
                        cluster: clickhouse.day_digests(Some(day), cut).await?.pop(),
                    };
                }
                Err(other) => return Err(other),
            }
        }
        compared.push(comparison);
    }
    let misplaced = clickhouse.misplaced_rows().await?;
    Ok(Verification { days: compared, misplaced })
}
