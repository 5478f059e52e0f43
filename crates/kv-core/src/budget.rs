//! How many bytes a response may still take ([`ResponseBudget`]): a request whose answer would
//! pass `--max-response-bytes` is refused while it reads, before the answer is built, so one
//! request (an MGET of a large value repeated, a `/_tx` of many large gets, a pipeline of
//! KEYS) cannot take the server's memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::StoreError;

/// What a response's pieces cost beyond their own bytes (quotes, commas, a key's field names).
pub const PIECE_OVERHEAD: usize = 16;

/// The bytes one response may still take. `Sync`: the work that charges it runs on the
/// writer's or a blocking thread; a write that may run again (a lost race, a batch run again)
/// starts each run from a budget of its own, so a run that is thrown away charges nothing.
#[derive(Debug)]
pub struct ResponseBudget {
    left: AtomicUsize,
    limit: usize,
}

impl ResponseBudget {
    pub fn new(limit: usize) -> Self {
        ResponseBudget {
            left: AtomicUsize::new(limit),
            limit,
        }
    }

    /// The bytes the response may take in all.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes still left.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// Takes `bytes` (plus [`PIECE_OVERHEAD`]) from the budget, or refuses them with
    /// [`StoreError::ResponseTooLarge`] and takes nothing.
    pub fn charge(&self, bytes: usize) -> Result<(), StoreError> {
        let cost = bytes.saturating_add(PIECE_OVERHEAD);
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(cost)
            })
            .map(|_| ())
            .map_err(|_| StoreError::ResponseTooLarge { limit: self.limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_it_and_keeps_the_rest() {
        let budget = ResponseBudget::new(100);
        assert!(budget.charge(50).is_ok()); // 66 taken
        assert_eq!(
            budget.charge(50),
            Err(StoreError::ResponseTooLarge { limit: 100 })
        );
        assert!(budget.charge(10).is_ok(), "a refused piece took nothing");
    }
}
