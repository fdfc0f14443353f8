//! [`Lease`]: work run under a lock of the meta store that is renewed while
//! the work runs and lapses soon after its holder dies, so a killed run
//! never keeps the next one out for long.

use std::future::Future;
use std::time::{Duration, Instant};

use warren_core::ports::MigrationLedger;

use crate::StoreError;

/// One lock of the meta store, held by this process.
pub struct Lease<'a> {
    ledger: &'a dyn MigrationLedger,
    name: String,
    /// What holds it, for messages ("migration", "reshard").
    what: &'static str,
    holder: String,
    /// How long the lock outlives a holder that stops renewing it;
    /// renewed three times as often while the work runs.
    lease: Duration,
}

impl<'a> Lease<'a> {
    pub fn new(ledger: &'a dyn MigrationLedger, name: String, what: &'static str, lease: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "warren".into());
        let holder = format!("{host}:{}:{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Self { ledger, name, what, holder, lease }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs `work` holding the lock, waiting up to `wait` while another
    /// holder has it. `work` stops when the lock is lost.
    pub async fn run<T>(
        &self,
        wait: Duration,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.ledger.acquire_lock(&self.name, &self.holder, self.lease_ms()).await? {
                Ok(()) => break,
                Err(holder) if Instant::now() >= deadline => {
                    return Err(StoreError::Busy(format!(
                        "another {} runs: the lock is held by {holder}",
                        self.what
                    )));
                }
                Err(holder) => {
                    tracing::info!(%holder, what = self.what, "waiting for the lock's holder");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let result = tokio::select! {
            result = work => result,
            lost = self.keep_renewing() => Err(lost),
        };
        // The work's own error says more than a failed release, which the
        // lease ends anyway.
        let released = self.ledger.release_lock(&self.name, &self.holder).await;
        let value = result?;
        released?;
        Ok(value)
    }

    async fn keep_renewing(&self) -> StoreError {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.lease / 3).await;
            match self.ledger.acquire_lock(&self.name, &self.holder, self.lease_ms()).await {
                Ok(Ok(())) => renewed = Instant::now(),
                Ok(Err(holder)) => {
                    return StoreError::Busy(format!("the {} lock was taken over by {holder}", self.what));
                }
                Err(error) if renewed.elapsed() >= self.lease * 2 / 3 => return error.into(),
                Err(error) => {
                    tracing::warn!(%error, what = self.what, "renewing the lock failed; trying again")
                }
            }
        }
    }
}
