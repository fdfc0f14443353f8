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
//! 2. The days of the Delta table are copied from the old layout by the
//!    servers themselves, a batch of consecutive days per `INSERT … SELECT
//!    … FROM remote()`, then each day verified against the Delta table
//!    (rows and checksum of the rows received before the copying began;
//!    the Delta table's side is computed while the servers copy). A day
//!    the old layout does not hold whole is loaded from the Delta table
//!    instead. Meanwhile the persons are loaded from the meta store.
//! 3. Once ingest holds the new layout level with the Delta table, every
//!    day is compared once more — its rows counted, and the rows received
//!    since its copy compared by checksum — with every row on the shard
//!    its key names, and the journal says `switched`: every process reads
//!    and writes the new layout from its next look at the journal.
//!
//! The old layout's tables stay until [`drop_source`] — a separate,
//! explicit step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warren_core::ports::ClusterLedger;
use warren_meta::MetaStore;
use warren_store::{
    ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl, CopiedDay, Cut, DayDigest, DeltaStore,
    EventStore, Lease, ReshardJournal, ReshardPhase, RESHARD_JOURNAL,
};

use super::rebuild::{load_day, load_persons, settled, PersonsLoad};
use super::verify::MARGIN;
use crate::OpsError;

/// How long the reshard's lock outlives a run that was killed.
const LEASE: Duration = Duration::from_secs(15);

/// How long the last step waits for ingest to bring the new layout level
/// with the Delta table.
const CATCH_UP_WAIT: Duration = Duration::from_secs(600);

/// Rows one statement copies at most, in whole days ([`Reshard::batch_rows`]).
/// A statement per day would cost every day a round of new parts on every
/// shard; a larger batch is more a killed run does again.
pub const BATCH_ROWS: u64 = 5_000_000;

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
    /// Rows one statement copies at most, in whole days (one day at least).
    pub batch_rows: u64,
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
        // The persons come from the meta store, not the old layout: they
        // load while the servers copy the days.
        let persons_wanted = !journal.persons_loaded;
        let persons = async {
            match persons_wanted {
                true => {
                    let load = PersonsLoad::BelowIngest;
                    load_persons(self.delta, self.meta, self.target, load, |_, _| {}).await.map(Some)
                }
                false => Ok(None),
            }
        };
        let (persons, ()) = tokio::try_join!(persons, self.copy_days(&days, &mut journal, progress))?;
        if let Some(projects) = persons {
            progress(ReshardProgress::Persons {
                projects: projects.len(),
                persons: projects.iter().map(|(_, persons)| persons).sum(),
            });
            journal.persons_loaded = true;
            journal.write(ledger(self.meta)).await?;
        }
        self.await_ingest(progress).await?;
        self.verify_since_copy(&mut journal, progress).await?;
        journal.phase = ReshardPhase::Switched;
        journal.switched_at_ms = Some(warren_core::unix_millis());
        journal.write(ledger(self.meta)).await?;
        progress(ReshardProgress::Switched);
        Ok(journal)
    }

    /// Copies the days the journal lacks, a batch of consecutive days per
    /// statement, and compares each day with the Delta table over the rows
    /// received before the copying began; records each in the journal.
    /// The Delta table's side of each comparison is computed while the
    /// servers copy.
    async fn copy_days(
        &self,
        days: &[(NaiveDate, u64)],
        journal: &mut ReshardJournal,
        progress: &mut impl FnMut(ReshardProgress<'_>),
    ) -> Result<(), OpsError> {
        let cut_us = Cut::settled_moment(MARGIN);
        let cut = Cut::ReceivedBefore(cut_us);
        let batches = batches(days, |day| journal.days.contains_key(day), self.batch_rows);
        let pending: Vec<NaiveDate> =
            batches.iter().flat_map(|batch| batch.iter().map(|(day, _)| *day)).collect();
        let (sender, mut expected) = tokio::sync::mpsc::unbounded_channel();
        let delta_side = async move {
            for day in pending {
                let digest = tokio::select! {
                    digest = self.delta.day_digests(Some(day), cut) => digest,
                    // The copying stopped: no one waits for the rest.
                    () = sender.closed() => break,
                };
                let digest =
                    digest.map(|mut found| found.pop().unwrap_or(DayDigest { day, rows: 0, checksum: 0 }));
                let failed = digest.is_err();
                if sender.send(digest).is_err() || failed {
                    break;
                }
            }
        };
        let total = days.len();
        let copying = async move {
            let started = Instant::now();
            let mut rows_left: u64 =
                batches.iter().flat_map(|batch| batch.iter()).map(|(_, rows)| rows).sum();
            let mut rows_now = 0u64;
            for batch in batches {
                let batch_started = Instant::now();
                let (first, last) = (batch[0].0, batch[batch.len() - 1].0);
                self.target.copy_from(self.source, Some(first..=last)).await?;
                let held = self.target.day_digests_between(first..=last, cut).await?;
                let mut checked = Vec::with_capacity(batch.len());
                for &(day, rows) in batch {
                    let wanted = expected.recv().await.ok_or_else(|| {
                        OpsError::Verification("the Delta table's digests stopped early".into())
                    })??;
                    let found = held.iter().find(|digest| digest.day == day).copied();
                    let found = found.unwrap_or(DayDigest { day, rows: 0, checksum: 0 });
                    let (digest, from) = match found == wanted {
                        true => (found, "cluster"),
                        false => self.compare_again(day, cut).await?,
                    };
                    checked.push((day, rows, digest, from));
                }
                let batch_millis = batch_started.elapsed().as_millis() as u64;
                let batch_rows = batch.iter().map(|(_, rows)| rows).sum::<u64>().max(1);
                for &(day, rows, digest, from) in &checked {
                    let copied = CopiedDay {
                        rows: digest.rows,
                        checksum: digest.checksum,
                        from: from.to_string(),
                        millis: batch_millis * rows / batch_rows,
                        cut_us: Some(cut_us),
                    };
                    journal.days.insert(day, copied);
                }
                journal.write(ledger(self.meta)).await?;
                for &(day, rows, digest, _) in &checked {
                    rows_now += digest.rows;
                    rows_left = rows_left.saturating_sub(rows);
                    let rate = rows_now as f64 / started.elapsed().as_secs_f64().max(0.001);
                    progress(ReshardProgress::Day {
                        index: days.iter().position(|(at, _)| *at == day).unwrap_or_default() + 1,
                        total,
                        day,
                        copied: &journal.days[&day],
                        rows_per_second: rate,
                        eta: Duration::from_secs_f64(rows_left as f64 / rate.max(1.0)),
                    });
                }
            }
            Ok::<_, OpsError>(())
        };
        let ((), copied) = tokio::join!(delta_side, copying);
        copied
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

    /// A day whose copy differs from the Delta table's digest computed
    /// ahead: both sides compared again for a while (ingest may have been
    /// writing rows the cut takes), and the day loaded from the Delta table
    /// when the old layout does not hold it whole.
    async fn compare_again(&self, day: NaiveDate, cut: Cut) -> Result<(DayDigest, &'static str), OpsError> {
        match settled(self.delta, self.target, day, cut).await {
            Ok(digest) => Ok((digest, "cluster")),
            Err(OpsError::Verification(why)) => {
                tracing::warn!(%day, %why, "the old layout does not hold the day whole; loading it from Delta");
                Ok((load_day(self.delta, self.target, day, cut).await?.digest, "delta"))
            }
            Err(other) => Err(other),
        }
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

    /// The last comparison before the switch, of every day and every
    /// shard. Each copied day was equal on both sides over the rows
    /// received before its cut, and checksums add up: what remains is to
    /// count each day's rows on both sides, and compare by checksum the
    /// rows received since — few, found by their received time — so the
    /// switch does not wait for a second read of everything. A day is
    /// compared whole, and loaded from the Delta table again if it still
    /// differs, when the journal has no cut for it, when it appeared
    /// since, when either side now holds another number of rows received
    /// before its cut than the copy verified (late rows, or a row gone),
    /// or when the rows received since differ.
    async fn verify_since_copy(
        &self,
        journal: &mut ReshardJournal,
        progress: &mut impl FnMut(ReshardProgress<'_>),
    ) -> Result<(), OpsError> {
        let end = Cut::settled_moment(MARGIN);
        let cut = Cut::ReceivedBefore(end);
        let (held, there) = tokio::try_join!(self.delta.day_counts(cut), self.target.day_counts(cut))?;
        let mut whole: BTreeSet<NaiveDate> = held.iter().chain(&there).map(|(day, _)| *day).collect();
        let mut since: BTreeMap<i64, Vec<NaiveDate>> = BTreeMap::new();
        for (day, copied) in &journal.days {
            if let Some(from) = copied.cut_us.filter(|from| *from < end) {
                since.entry(from).or_default().push(*day);
            }
        }
        let count = |counts: &[(NaiveDate, u64)], day: NaiveDate| {
            counts.iter().find(|(at, _)| *at == day).map_or(0, |(_, rows)| *rows)
        };
        for (from, days) in since {
            let window = Cut::ReceivedBetween(from, end);
            let (ours, theirs) = tokio::try_join!(
                self.delta.day_digests(None, window),
                self.target.day_digests(None, window)
            )?;
            let find = |digests: &[DayDigest], day: NaiveDate| digests.iter().find(|d| d.day == day).copied();
            let rows = |digest: Option<DayDigest>| digest.map_or(0, |digest| digest.rows);
            for day in days {
                let (late_ours, late_theirs) = (find(&ours, day), find(&theirs, day));
                let copied = journal.days[&day].rows;
                let before_cut_ours = count(&held, day).checked_sub(rows(late_ours));
                let before_cut_theirs = count(&there, day).checked_sub(rows(late_theirs));
                if late_ours == late_theirs
                    && before_cut_ours == Some(copied)
                    && before_cut_theirs == Some(copied)
                {
                    whole.remove(&day);
                }
            }
        }
        for day in whole {
            match settled(self.delta, self.target, day, cut).await {
                Ok(_) => continue,
                Err(OpsError::Verification(_)) => {}
                Err(other) => return Err(other),
            }
            tracing::warn!(%day, "a day differs now; loading it from Delta again");
            let loaded = load_day(self.delta, self.target, day, cut).await.map_err(|error| match error {
                OpsError::Verification(why) => {
                    OpsError::Verification(format!("{day} still differs after loading it again: {why}"))
                }
                other => other,
            })?;
            let copied = CopiedDay {
                rows: loaded.digest.rows,
                checksum: loaded.digest.checksum,
                from: "delta".into(),
                millis: (loaded.read + loaded.insert).as_millis() as u64,
                cut_us: Some(end),
            };
            journal.days.insert(day, copied);
        }
        if let Some(shard) = self.target.misplaced_rows().await?.iter().find(|shard| shard.rows > 0) {
            return Err(OpsError::Verification(format!(
                "shard {} of the new layout holds {} rows its key sends elsewhere",
                shard.shard, shard.rows
            )));
        }
        progress(ReshardProgress::Verified { days: held.len() });
        Ok(())
    }
}

/// The days not done yet in batches a statement copies: days that follow
/// one another in the calendar, none done, of `batch_rows` rows together
/// at most, one day at least.
fn batches(
    days: &[(NaiveDate, u64)],
    done: impl Fn(&NaiveDate) -> bool,
    batch_rows: u64,
) -> Vec<&[(NaiveDate, u64)]> {
    let mut batches = Vec::new();
    let (mut start, mut rows) = (0, 0u64);
    for (index, (day, day_rows)) in days.iter().enumerate() {
        if done(day) {
            if start < index {
                batches.push(&days[start..index]);
            }
            (start, rows) = (index + 1, 0);
            continue;
        }
        // A day the Delta table lacks between two it holds is not copied.
        let follows = index > start && days[index - 1].0.succ_opt() == Some(*day);
        if start < index && (rows + day_rows > batch_rows || !follows) {
            batches.push(&days[start..index]);
            (start, rows) = (index, 0);
        }
        rows += day_rows;
    }
    if start < days.len() {
        batches.push(&days[start..]);
    }
    batches
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

#[cfg(test)]
mod tests {
    use super::*;

    fn days(rows: &[u64]) -> Vec<(NaiveDate, u64)> {
        let first = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
        rows.iter().enumerate().map(|(at, rows)| (first + chrono::Days::new(at as u64), *rows)).collect()
    }

    fn shape(batches: &[&[(NaiveDate, u64)]]) -> Vec<Vec<u64>> {
        batches.iter().map(|batch| batch.iter().map(|(_, rows)| *rows).collect()).collect()
    }

    #[test]
    fn batches_fill_up_to_the_rows_and_take_a_big_day_alone() {
        let days = days(&[3, 4, 2, 9, 1, 1]);
        assert_eq!(shape(&batches(&days, |_| false, 7)), vec![vec![3, 4], vec![2], vec![9], vec![1, 1]]);
        assert_eq!(
            shape(&batches(&days, |_| false, 1)),
            vec![vec![3], vec![4], vec![2], vec![9], vec![1], vec![1]]
        );
        assert_eq!(shape(&batches(&days, |_| false, 100)), vec![vec![3, 4, 2, 9, 1, 1]]);
    }

    #[test]
    fn a_done_day_splits_a_batch_and_is_not_copied_again() {
        let days = days(&[3, 4, 2, 9, 1, 1]);
        let done = |day: &NaiveDate| [days[1].0, days[4].0].contains(day);
        assert_eq!(shape(&batches(&days, done, 100)), vec![vec![3], vec![2, 9], vec![1]]);
        assert!(batches(&days, |_| true, 100).is_empty());
        assert!(batches(&[], |_| false, 100).is_empty());
    }
}
