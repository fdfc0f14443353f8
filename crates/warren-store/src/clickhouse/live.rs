//! [`LiveCluster`]: the ClickHouse cluster a deployment uses right now,
//! which a reshard moves from one layout to another while ingest and
//! queries go on.
//!
//! It is the cluster the configuration names until the reshard journal
//! ([`ReshardJournal`], in the meta store) says otherwise. While a reshard
//! copies, every write goes to both layouts — the configured one first —
//! and the offsets it reports are the lower of the two, so a replica that
//! catches up brings the new layout up from where it stands. Once the
//! reshard has verified the new layout and switched, reads and writes go
//! to it alone; each query runs on one layout from start to end. Every
//! process reads the journal at most [`REFRESH`] apart, so all follow a
//! switch within that time; a process started later finds the new layout
//! from the start, whatever its configuration still names.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use warren_core::person::{PersonChanges, PersonsSnapshot};
use warren_core::ports::{ClusterLedger, SystemStatus};

use super::{ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl};
use crate::upkeep::MaintenanceReport;
use crate::{EventKey, EventRow, EventStore, StoreError};

/// The operation journal's name for the reshard of the cluster.
pub const RESHARD_JOURNAL: &str = "clickhouse.reshard";

/// How long a process goes on with what it last read of the journal.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Where a reshard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshardPhase {
    /// Days are copied to the new layout; ingest writes both.
    Copying,
    /// The new layout is verified and in use; the old one is left as it
    /// was, not written.
    Switched,
    /// The old layout's tables are dropped.
    Dropped,
}

/// One day the reshard copied and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedDay {
    pub rows: u64,
    pub checksum: u64,
    /// `cluster` (read from the old layout) or `delta` (loaded from the
    /// canonical table, when the old layout did not hold the day whole).
    pub from: String,
    /// The day's share, by rows, of the time its copy and comparison took.
    pub millis: u64,
    /// The comparison took the rows received before this time (µs): the
    /// last comparison before the switch takes only the rows received
    /// since. Absent in journals of earlier versions, whose days are
    /// compared whole.
    #[serde(default)]
    pub cut_us: Option<i64>,
}

/// The meta store's record of a reshard: what `warren clickhouse reshard`
/// has done, and what every process follows. Layouts are kept without
/// credentials ([`ClickHouseUrl::without_credentials`]): each process
/// reaches them with those of its own `[clickhouse] url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardJournal {
    /// The layout being left.
    pub source: String,
    /// The new layout.
    pub target: String,
    pub phase: ReshardPhase,
    pub started_at_ms: i64,
    /// Copied and verified, by day.
    pub days: BTreeMap<NaiveDate, CopiedDay>,
    pub persons_loaded: bool,
    pub switched_at_ms: Option<i64>,
}

impl ReshardJournal {
    pub async fn read(ledger: &dyn ClusterLedger) -> Result<Option<Self>, StoreError> {
        let Some(document) = ledger.read_journal(RESHARD_JOURNAL).await? else { return Ok(None) };
        serde_json::from_value(document)
            .map(Some)
            .map_err(|e| StoreError::Invalid(format!("the reshard journal does not read: {e}")))
    }

    pub async fn write(&self, ledger: &dyn ClusterLedger) -> Result<(), StoreError> {
        let document = serde_json::to_value(self)
            .map_err(|e| StoreError::Invalid(format!("the reshard journal does not write: {e}")))?;
        Ok(ledger.write_journal(RESHARD_JOURNAL, &document).await?)
    }

    /// The layout to use in place of `configured` once this reshard moved
    /// it away (switched, or dropped since), reached with `configured`'s
    /// credentials; `None` while it has not, or when it moved another.
    pub fn moved(&self, configured: &ClickHouseUrl) -> Result<Option<ClickHouseUrl>, StoreError> {
        if self.phase == ReshardPhase::Copying || !ClickHouseUrl::parse(&self.source)?.same_tables(configured)
        {
            return Ok(None);
        }
        Ok(Some(ClickHouseUrl::parse(&self.target)?.with_credentials_of(configured)))
    }

    /// What the System page shows: layouts by database, cluster and
    /// servers, the phase and the days copied.
    pub fn summary(&self) -> serde_json::Value {
        let layout = |url: &str| match ClickHouseUrl::parse(url) {
            Ok(url) => {
                serde_json::json!({"database": url.database, "cluster": url.cluster, "hosts": url.hosts})
            }
            Err(error) => serde_json::json!({"error": error.to_string()}),
        };
        serde_json::json!({
            "source": layout(&self.source),
            "target": layout(&self.target),
            "phase": self.phase,
            "started_at_ms": self.started_at_ms,
            "days_copied": self.days.len(),
            "rows_copied": self.days.values().map(|day| day.rows).sum::<u64>(),
            "switched_at_ms": self.switched_at_ms,
        })
    }
}

impl ClickHouseStoreOptions {
    /// These options pointed at the layout a reshard moved the configured
    /// one to, when one did; as they are when the meta store records no
    /// such reshard, or cannot say (one not migrated yet has no journal).
    pub async fn in_use(mut self, ledger: &dyn ClusterLedger) -> Result<Self, StoreError> {
        if let Ok(Some(journal)) = ReshardJournal::read(ledger).await {
            if let Some(moved) = journal.moved(&self.url)? {
                self.url = moved;
            }
        }
        Ok(self)
    }
}

/// Which layouts reads and writes go to.
#[derive(Clone)]
struct Route {
    active: Arc<ClickHouseStore>,
    /// The new layout while a reshard copies.
    target: Option<Arc<ClickHouseStore>>,
    journal: Option<ReshardJournal>,
    checked_at: Instant,
}

/// The cluster of a deployment, across reshards.
pub struct LiveCluster {
    options: ClickHouseStoreOptions,
    ledger: Arc<dyn ClusterLedger>,
    /// Shared rather than cloned per call: every append and query asks
    /// for it.
    route: RwLock<Arc<Route>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Set when a target appears while running: the next append writes
    /// the active layout only and fails, so the replica falls behind and
    /// catches the target up from its own offsets before writing it
    /// batch by batch.
    announce: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LiveCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCluster").field("options", &self.options).finish_non_exhaustive()
    }
}

impl LiveCluster {
    /// The layout in use for the configured cluster, schema brought up to
    /// date; while a reshard copies, its target too.
    pub async fn open(
        options: ClickHouseStoreOptions,
        ledger: Arc<dyn ClusterLedger>,
    ) -> Result<Self, StoreError> {
        let journal = ReshardJournal::read(ledger.as_ref()).await?;
        let route = route_of(&options, &ledger, journal, None).await?;
        Ok(Self {
            options,
            ledger,
            route: RwLock::new(Arc::new(route)),
            refreshing: tokio::sync::Mutex::new(()),
            announce: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The layout queries read now: each query takes it once.
    pub async fn active(&self) -> Arc<ClickHouseStore> {
        self.current().await.active.clone()
    }

    async fn current(&self) -> Arc<Route> {
        let route = self.read_route();
        if route.checked_at.elapsed() < REFRESH {
            return route;
        }
        let _one = self.refreshing.lock().await;
        let route = self.read_route();
        if route.checked_at.elapsed() < REFRESH {
            return route;
        }
        match self.refreshed(&route).await {
            Ok(next) => {
                let next = Arc::new(next);
                if next.target.is_some() && route.target.is_none() {
                    self.announce.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if !Arc::ptr_eq(&next.active, &route.active) {
                    tracing::info!(cluster = ?next.active.url(), "the reshard switched: using the new layout");
                }
                *self.route.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
                next
            }
            Err(error) => {
                // The meta store may be away for a moment: go on as before
                // and ask again next time.
                tracing::warn!(%error, "reading the reshard journal failed; keeping the cluster in use");
                let kept = Arc::new(Route { checked_at: Instant::now(), ..Route::clone(&route) });
                *self.route.write().unwrap_or_else(std::sync::PoisonError::into_inner) = kept.clone();
                kept
            }
        }
    }

    fn read_route(&self) -> Arc<Route> {
        self.route.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn refreshed(&self, route: &Route) -> Result<Route, StoreError> {
        let journal = ReshardJournal::read(self.ledger.as_ref()).await?;
        if journal == route.journal {
            return Ok(Route { checked_at: Instant::now(), ..Route::clone(route) });
        }
        route_of(&self.options, &self.ledger, journal, Some(route)).await
    }
}

/// The route the journal gives the configured cluster; stores of `known`
/// are kept when their layout stays in use.
async fn route_of(
    options: &ClickHouseStoreOptions,
    ledger: &Arc<dyn ClusterLedger>,
    journal: Option<ReshardJournal>,
    known: Option<&Route>,
) -> Result<Route, StoreError> {
    let configured = &options.url;
    let journal = journal.filter(|journal| {
        let names = |url: &str| ClickHouseUrl::parse(url).is_ok_and(|url| url.same_tables(configured));
        names(&journal.source) || names(&journal.target)
    });
    let reuse = |url: &ClickHouseUrl| {
        known
            .into_iter()
            .flat_map(|route| [Some(&route.active), route.target.as_ref()])
            .flatten()
            .find(|store| store.url().same_tables(url))
    };
    let open = |url: ClickHouseUrl| {
        let options = ClickHouseStoreOptions { url, ..options.clone() };
        async move {
            match reuse(&options.url) {
                Some(store) => Ok(store.clone()),
                None => ClickHouseStore::open(options, ledger.clone()).await.map(Arc::new),
            }
        }
    };
    let moved = match &journal {
        Some(journal) => journal.moved(configured)?,
        None => None,
    };
    let (active, target) = match (&journal, moved) {
        (_, Some(moved)) => {
            tracing::warn!(
                database = %moved.database,
                cluster = %moved.cluster,
                "[clickhouse] url names the layout a reshard left; using the new one (set the url to it)"
            );
            (open(moved).await?, None)
        }
        (Some(journal), None)
            if journal.phase == ReshardPhase::Copying
                && ClickHouseUrl::parse(&journal.source)?.same_tables(configured) =>
        {
            let target = ClickHouseUrl::parse(&journal.target)?.with_credentials_of(configured);
            (open(configured.clone()).await?, Some(open(target).await?))
        }
        // No reshard of this layout, or the configuration names the new
        // layout already.
        _ => (open(configured.clone()).await?, None),
    };
    Ok(Route { active, target, journal, checked_at: Instant::now() })
}

#[async_trait]
impl EventStore for LiveCluster {
    async fn append(
        &self,
        writer: &str,
        rows: Vec<EventRow>,
        offsets: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        let route = self.current().await;
        let Some(target) = &route.target else { return route.active.append(writer, rows, offsets).await };
        route.active.append(writer, rows.clone(), offsets).await?;
        if self.announce.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::ClickHouse(
                "a reshard began: the new layout catches up from its own offsets first".into(),
            ));
        }
        target.append(writer, rows, offsets).await
    }

    async fn write_persons(&self, changes: &PersonChanges<'_>) -> Result<(), StoreError> {
        let route = self.current().await;
        route.active.write_persons(changes).await?;
        match &route.target {
            Some(target) => target.write_persons(changes).await,
            None => Ok(()),
        }
    }

    async fn offsets(&self, writer: &str, partitions: u32) -> Result<HashMap<u32, u64>, StoreError> {
        let route = self.current().await;
        let active = route.active.offsets(writer, partitions).await?;
        let Some(target) = &route.target else { return Ok(active) };
        let target = target.offsets(writer, partitions).await?;
        Ok((0..partitions)
            .filter_map(|partition| {
                let held = |offsets: &HashMap<u32, u64>| offsets.get(&partition).copied().unwrap_or(0);
                Some((partition, held(&active).min(held(&target)))).filter(|(_, offset)| *offset > 0)
            })
            .collect())
    }

    async fn delete_events(&self, team_id: i64, range: std::ops::Range<i64>) -> Result<u64, StoreError> {
        let route = self.current().await;
        let deleted = route.active.delete_events(team_id, range.clone()).await?;
        if let Some(target) = &route.target {
            target.delete_events(team_id, range).await?;
        }
        Ok(deleted)
    }

    async fn maintain(&self) -> Result<MaintenanceReport, StoreError> {
        let route = self.current().await;
        let mut report = route.active.maintain().await?;
        if let Some(target) = &route.target {
            let other = target.maintain().await?;
            report.files_compacted += other.files_compacted;
            report.files_written += other.files_written;
        }
        Ok(report)
    }

    async fn read_events(&self, keys: &[EventKey]) -> Result<Vec<EventRow>, StoreError> {
        self.active().await.read_events(keys).await
    }

    async fn refresh_persons(&self, snapshot: &PersonsSnapshot) -> Result<(), StoreError> {
        let route = self.current().await;
        route.active.refresh_persons(snapshot).await?;
        match &route.target {
            Some(target) => target.refresh_persons(snapshot).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl SystemStatus for LiveCluster {
    async fn system_status(&self) -> serde_json::Value {
        let route = self.current().await;
        let mut status = route.active.status().await;
        if let (Some(journal), Some(object)) = (&route.journal, status.as_object_mut()) {
            object.insert("reshard".into(), journal.summary());
        }
        status
    }
}
