//! Admission control: how many capture requests (and the SDKs' `/flags`
//! and `/decide` calls, which share the budget) run at once and how much
//! memory their bodies may hold, received and decoded. Past either limit a
//! request is answered 503 at once, so memory stays bounded when clients
//! send faster than the log can take.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

#[derive(Debug, Clone)]
pub(crate) struct Admission {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    total_bytes: usize,
}

/// One admitted request's share, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    bytes: Arc<Semaphore>,
    total_bytes: usize,
    _request: OwnedSemaphorePermit,
    reserved: Vec<OwnedSemaphorePermit>,
}

impl Admission {
    pub(crate) fn new(max_requests: usize, max_bytes: usize) -> Self {
        let total_bytes = max_bytes.clamp(1, u32::MAX as usize);
        Self {
            requests: Arc::new(Semaphore::new(max_requests.max(1))),
            bytes: Arc::new(Semaphore::new(total_bytes)),
            total_bytes,
        }
    }

    /// Admits a request that will hold `bytes` to begin with.
    pub(crate) fn admit(&self, bytes: usize) -> Result<Ticket, ApiError> {
        let request = self.requests.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
        let mut ticket = Ticket {
            bytes: self.bytes.clone(),
            total_bytes: self.total_bytes,
            _request: request,
            reserved: Vec::new(),
        };
        ticket.reserve(bytes)?;
        Ok(ticket)
    }
}

impl Ticket {
    /// Reserves `bytes` more for this request, or fails with 503.
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        // A request larger than the whole budget may still run alone.
        let bytes = bytes.min(self.total_bytes) as u32;
        let permit = self.bytes.clone().try_acquire_many_owned(bytes).map_err(|_| ApiError::Overloaded)?;
        self.reserved.push(permit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_either_limit_and_gives_back_on_drop() {
        let admission = Admission::new(2, 100);
        let mut first = admission.admit(60).expect("fits");
        assert!(matches!(admission.admit(60), Err(ApiError::Overloaded)), "bytes");
        assert!(matches!(first.reserve(50), Err(ApiError::Overloaded)), "bytes, later");
        let second = admission.admit(10).expect("fits");
        assert!(matches!(admission.admit(1), Err(ApiError::Overloaded)), "requests");
        drop(first);
        drop(second);
        let lone = admission.admit(10_000).expect("a lone oversized request runs");
        drop(lone);
        admission.admit(100).expect("everything was given back");
    }
}
