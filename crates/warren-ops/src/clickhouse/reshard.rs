//! Moving the cluster's events and persons to a new layout — more or fewer
//! shards, other servers — while ingest and queries go on
//! (`warren clickhouse reshard --to URL`).
//!
//! The steps, each recorded in the meta store's reshard journal
//! ([`ReshardJournal`]) before the next begins, so a run killed anywhere
//! is finished by running it again:
//! 1. The new layout's tables are made by the migration runner, and its
//!    offsets set to what the Delta table holds now; the journal says
//!    `copying`, and from then on every process writes both layouts
//!    ([`warren_store::LiveCluster`]): what is ingested after this point
//!    reaches the new layout that way.
//! 2. Each day of the Delta table is copied from the old layout by the
//!    servers themselves (`INSERT … SELECT … FROM remote()`), then
//!    verified against the Delta table (rows and checksum). A day the old
//!    layout does not hold whole is loaded from the Delta table instead.
//! 3. The persons are loaded from the meta store.
//! 4. Once ingest holds the new layout level with the Delta table, every
//!    day is compared once more, with every row on the shard its key
//!    names, and the journal says `switched`: every process reads and
//!    writes the new layout from its next look at the journal.
//!
//! The old layout's tables stay until [`drop_source`] — a separate,
//! explicit step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warren_core::ports::ClusterLedger;
use warren_meta::MetaStore;
use warren_store::{
    ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl, CopiedDay, Cut, DeltaStore, EventStore, Lease,
    ReshardJournal, ReshardPhase, RESHARD_JOURNAL,
};

use super::rebuild::{load_day, load_persons, settled, PersonsLoad};
use super::verify::{verify, MARGIN};
use crate::OpsError;

/// How long the reshard's lock outlives a run that was killed.
const LEASE: Duration = Duration::from_secs(15);

/// How long the last step waits for ingest to bring the new layout level
/// with the Delta table.
const CATCH_UP_WAIT: Duration = Duration::from_secs(600);

/// What a reshard reports as it goes.
#[derive(Debug)]
pub enum ReshardProgress<'a> {
    /// Copying begins (or resumes): days in all, days already done.
    Copying {
        days: usize,
        done: usize,
    },
    /// One more day copied and verified, with the rate so far and the
    /// time the rest should take at that rate.
    Day {
        index: usize,
        total: usize,
        day: NaiveDate,
        copied: &'a CopiedDay,
        rows_per_second: f64,
        eta: Duration,
    },
    Persons {
        projects: usize,
        persons: u64,
    },
    /// Ingest has yet to bring the new layout level with the Delta table.
    CatchingUp {
        records_behind: u64,
    },
    /// The final comparison found these days equal.
    Verified {
        days: usize,
    },
    Switched,
}

/// The stores a reshard works on.
pub struct Reshard<'a> {
    pub delta: &'a DeltaStore,
    pub meta: &'a dyn MetaStore,
    /// The layout being left: the one in use.
    pub source: &'a ClickHouseStore,
    /// The new layout.
    pub target: &'a ClickHouseStore,
    /// The event log's partitions.
    pub partitions: u32,
}

impl Reshard<'_> {
    /// Runs the reshard, or the rest of one a killed run began, up to the
    /// switch; returns the journal as it ends.
    pub async fn run(
        &self,
        mut progress: impl FnMut(ReshardProgress<'_>),
    ) -> Result<ReshardJournal, OpsError> {
        let ledger: &dyn ClusterLedger = self.meta;
        let lease = Lease::new(ledger, format!("{RESHARD_JOURNAL}:lock"), "reshard", LEASE);
        // A run killed a moment ago holds the lock until its lease lapses.
        lease.run(LEASE * 2, async { Ok(self.steps(&mut progress).await) }).await?
    }

    async fn steps(
        &self,
        progress: &mut impl FnMut(ReshardProgress<'_>),
    ) -> Result<ReshardJournal, OpsError> {
        let mut journal = self.begin().await?;
        if journal.phase != ReshardPhase::Copying {
            return Ok(journal);
        }
        let days = self.delta.rows_per_day().await?;
        progress(ReshardProgress::Copying { days: days.len(), done: journal.days.len() });
        let started = Instant::now();
        let (mut rows_now, mut rows_left) = (0u64, days.iter().map(|(_, rows)| rows).sum::<u64>());
        for (index, &(day, rows)) in days.iter().enumerate() {
            if journal.days.contains_key(&day) {
                rows_left = rows_left.saturating_sub(rows);
                continue;
            }
            let copied = self.copy_day(day).await?;
            rows_now += copied.rows;
            rows_left = rows_left.saturating_sub(rows);
            let rate = rows_now as f64 / started.elapsed().as_secs_f64().max(0.001);
            let eta = Duration::from_secs_f64(rows_left as f64 / rate.max(1.0));
            journal.days.insert(day, copied);
            journal.write(ledger(self.meta)).await?;
            let copied = &journal.days[&day];
            progress(ReshardProgress::Day {
                index: index + 1,
                total: days.len(),
                day,
                copied,
                rows_per_second: rate,
                eta,
            });
        }
        if !journal.persons_loaded {
            let projects =
                load_persons(self.delta, self.meta, self.target, PersonsLoad::BelowIngest, |_, _| {}).await?;
            progress(ReshardProgress::Persons {
                projects: projects.len(),
                persons: projects.iter().map(|(_, persons)| persons).sum(),
            });
            journal.persons_loaded = true;
            journal.write(ledger(self.meta)).await?;
        }
        self.await_ingest(progress).await?;
        self.verify_all(&mut journal, progress).await?;
        journal.phase = ReshardPhase::Switched;
        journal.switched_at_ms = Some(warren_core::unix_millis());
        journal.write(ledger(self.meta)).await?;
        progress(ReshardProgress::Switched);
        Ok(journal)
    }

    /// The journal of this reshard: the one a killed run left, or a new
    /// one once the new layout's offsets say what it will hold.
    async fn begin(&self) -> Result<ReshardJournal, OpsError> {
        let (source, target) = (self.source.url(), self.target.url());
        if source.database == target.database {
            return Err(OpsError::Refused(format!(
                "the new layout must use a database other than {:?}: the meta store keeps each database's \
                 offsets and migrations by its name",
                source.database
            )));
        }
        let names = |url: &str, of: &ClickHouseStore| {
            ClickHouseUrl::parse(url).is_ok_and(|url| url.same_tables(of.url()))
        };
        if let Some(journal) = ReshardJournal::read(ledger(self.meta)).await? {
            if journal.moved(source)?.is_some() && !names(&journal.target, self.target) {
                return Err(OpsError::Refused(format!(
                    "[clickhouse] url names the layout an earlier reshard left; set it to the layout in use ({}) \
                     and reshard from there",
                    describe(&journal.target)
                )));
            }
            let ours = names(&journal.source, self.source) && names(&journal.target, self.target);
            match journal.phase {
                ReshardPhase::Copying if ours => return Ok(journal),
                ReshardPhase::Switched | ReshardPhase::Dropped if ours => return Ok(journal),
                ReshardPhase::Copying => {
                    return Err(OpsError::Refused(format!(
                        "another reshard is under way (to {}); run it to its end first",
                        describe(&journal.target)
                    )))
                }
                // A finished reshard of another layout: this one begins.
                ReshardPhase::Switched | ReshardPhase::Dropped => {}
            }
        }
        // What the Delta table holds now reaches the new layout by the
        // copy; what comes after, by ingest writing both from here.
        let held = self.delta.offsets(warren_ingest::CONSUMER, self.partitions).await?;
        let offsets: Vec<(u32, u64)> = held.into_iter().collect();
        self.target.append(warren_ingest::CONSUMER, Vec::new(), &offsets).await?;
        let journal = ReshardJournal {
            source: source.without_credentials(),
            target: target.without_credentials(),
            phase: ReshardPhase::Copying,
            started_at_ms: warren_core::unix_millis(),
            days: Default::default(),
            persons_loaded: false,
            switched_at_ms: None,
        };
        journal.write(ledger(self.meta)).await?;
        Ok(journal)
    }

    /// Copies one day from the old layout, or from the Delta table when
    /// the old layout does not hold it as the table does; verified.
    async fn copy_day(&self, day: NaiveDate) -> Result<CopiedDay, OpsError> {
        let started = Instant::now();
        self.target.copy_from(self.source, Some(day)).await?;
        let cut = Cut::settled_for(MARGIN);
        let (digest, from) = match settled(self.delta, self.target, day, cut).await {
            Ok(digest) => (digest, "cluster"),
            Err(OpsError::Verification(why)) => {
                tracing::warn!(%day, %why, "the old layout does not hold the day whole; loading it from Delta");
                (load_day(self.delta, self.target, day, cut).await?.digest, "delta")
            }
            Err(other) => return Err(other),
        };
        Ok(CopiedDay {
            rows: digest.rows,
            checksum: digest.checksum,
            from: from.to_string(),
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// Waits until the new layout holds every log record ingest finished.
    async fn await_ingest(&self, progress: &mut impl FnMut(ReshardProgress<'_>)) -> Result<(), OpsError> {
        let deadline = Instant::now() + CATCH_UP_WAIT;
        loop {
            let behind = self.target.records_behind().await?;
            if behind == 0 {
                return Ok(());
            }
            progress(ReshardProgress::CatchingUp { records_behind: behind });
            if Instant::now() > deadline {
                return Err(OpsError::Verification(format!(
                    "ingest has not written the new layout for {} s ({behind} records behind): is every \
                     ingest process running this version? Run the reshard again once it is",
                    CATCH_UP_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Compares every day and the shards once more; a day that changed
    /// since its copy (a write ingest could not make) is loaded again.
    async fn verify_all(
        &self,
        journal: &mut ReshardJournal,
        progress: &mut impl FnMut(ReshardProgress<'_>),
    ) -> Result<(), OpsError> {
        let cut = Cut::settled_for(MARGIN);
        let mut found = verify(self.delta, self.target, cut).await?;
        let differing: Vec<NaiveDate> =
            found.days.iter().filter(|day| !day.agrees()).map(|day| day.day).collect();
        for &day in &differing {
            tracing::warn!(%day, "a copied day differs now; loading it from Delta again");
            let loaded = load_day(self.delta, self.target, day, cut).await?;
            journal.days.insert(
                day,
                CopiedDay {
                    rows: loaded.digest.rows,
                    checksum: loaded.digest.checksum,
                    from: "delta".into(),
                    millis: (loaded.read + loaded.insert).as_millis() as u64,
                },
            );
        }
        if !differing.is_empty() {
            found = verify(self.delta, self.target, cut).await?;
        }
        if let Some(shard) = found.misplaced.iter().find(|shard| shard.rows > 0) {
            return Err(OpsError::Verification(format!(
                "shard {} of the new layout holds {} rows its key sends elsewhere",
                shard.shard, shard.rows
            )));
        }
        if let Some(day) = found.days.iter().find(|day| !day.agrees()) {
            return Err(OpsError::Verification(format!("{} still differs after loading it again", day.day)));
        }
        progress(ReshardProgress::Verified { days: found.days.len() });
        Ok(())
    }
}

fn ledger(meta: &dyn MetaStore) -> &dyn ClusterLedger {
    meta
}

/// A layout by database, cluster and servers, never credentials.
pub fn describe(url: &str) -> String {
    match ClickHouseUrl::parse(url) {
        Ok(url) => format!("{} on cluster {} ({})", url.database, url.cluster, url.hosts.join(", ")),
        Err(_) => "a layout whose URL does not read".into(),
    }
}

/// Drops the tables of the layout the recorded reshard left, once it has
/// switched: every migration of its database rolled back, on every server,
/// reached with the credentials of `configured` (the configuration names
/// either layout). Refused before the switch. Returns the operations
/// undone; nothing when they are gone already.
pub async fn drop_source(
    meta: Arc<dyn MetaStore>,
    configured: &ClickHouseStoreOptions,
) -> Result<usize, OpsError> {
    let Some(mut journal) = ReshardJournal::read(ledger(meta.as_ref())).await? else {
        return Err(OpsError::Refused("no reshard is recorded: nothing to drop".into()));
    };
    if journal.phase == ReshardPhase::Copying {
        return Err(OpsError::Refused(
            "the reshard has not switched yet: the old layout is still in use".into(),
        ));
    }
    let url = ClickHouseUrl::parse(&journal.source)?.with_credentials_of(&configured.url);
    let source =
        ClickHouseStore::connect(ClickHouseStoreOptions { url, ..configured.clone() }, meta.clone())?;
    let undone = source.migrator().down(0, |_| std::ops::ControlFlow::Continue(())).await?;
    journal.phase = ReshardPhase::Dropped;
    journal.write(ledger(meta.as_ref())).await?;
    Ok(undone)
}
