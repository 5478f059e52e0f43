//! How many bytes a response may still take ([`ResponseBudget`]): a request whose answer would
//! pass `--max-response-bytes` is refused while it reads, before the answer is built, so one
//! request (an MGET of a large value repeated, a `/_tx` of many large gets, a pipeline of
//! KEYS) cannot take the server's memory.

use std::cell::Cell;

use crate::error::StoreError;

/// What a response's pieces cost beyond their own bytes (quotes, commas, a key's field names).
pub const PIECE_OVERHEAD: usize = 16;

/// The bytes one response may still take.
#[derive(Debug)]
pub struct ResponseBudget {
    left: Cell<usize>,
    limit: usize,
}

impl ResponseBudget {
    pub fn new(limit: usize) -> Self {
        ResponseBudget {
            left: Cell::new(limit),
            limit,
        }
    }

    /// No limit (kvstore's own reads, tests).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Takes `bytes` (plus [`PIECE_OVERHEAD`]) from the budget, or refuses them with
    /// [`StoreError::ResponseTooLarge`] and takes nothing.
    pub fn charge(&self, bytes: usize) -> Result<(), StoreError> {
        let cost = bytes.saturating_add(PIECE_OVERHEAD);
        match self.left.get().checked_sub(cost) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(StoreError::ResponseTooLarge { limit: self.limit }),
        }
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
        assert!(ResponseBudget::unlimited().charge(usize::MAX).is_ok());
    }
}
