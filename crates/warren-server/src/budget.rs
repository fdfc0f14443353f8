//! A byte budget for request bodies in flight, so memory stays bounded when
//! clients send faster than the log can take: past the budget, requests are
//! answered 503 at once instead of piling up.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

#[derive(Debug, Clone)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes held for one request, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// Reserves `bytes` more for `reservation`, or fails with 503.
    pub fn reserve(&self, reservation: &mut Reservation, bytes: usize) -> Result<(), ApiError> {
        // A request larger than the whole budget may still run alone.
        let bytes = bytes.clamp(1, self.total) as u32;
        let permit = self.bytes.clone().try_acquire_many_owned(bytes).map_err(|_| ApiError::Overloaded)?;
        reservation.permits.push(permit);
        Ok(())
    }

    pub fn empty_reservation() -> Reservation {
        Reservation { permits: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_budget_and_gives_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut first = MemoryBudget::empty_reservation();
        budget.reserve(&mut first, 60).expect("fits");
        let mut second = MemoryBudget::empty_reservation();
        assert!(matches!(budget.reserve(&mut second, 60), Err(ApiError::Overloaded)));
        drop(first);
        budget.reserve(&mut second, 60).expect("fits again");
        let mut huge = MemoryBudget::empty_reservation();
        drop(second);
        budget.reserve(&mut huge, 10_000).expect("a lone oversized request runs");
    }
}
