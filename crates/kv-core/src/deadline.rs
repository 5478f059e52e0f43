//! When a request's work must stop ([`Deadline`]): past `--request-timeout`, or as soon as
//! its client has gone away. Long work (a listing's pages, a pipeline's commands, a
//! transaction's ops) asks [`Deadline::check`] between steps; an `Err` rolls back whatever the
//! request wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// Says whether a request's client has gone away (the HTTP layer's, from its connection).
pub type ClientProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// Until when a request may run, and whether its client is still there.
#[derive(Clone)]
pub struct Deadline {
    at: Option<Instant>,
    timeout: Duration,
    gone: Arc<AtomicBool>,
    probe: Option<ClientProbe>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("at", &self.at)
            .field("timeout", &self.timeout)
            .field("gone", &self.gone)
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

/// Says the client has gone when dropped: the HTTP layer holds it in the request's future,
/// which the server drops when the client disconnects.
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicBool>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Deadline {
    /// `timeout` from now (`Duration::ZERO`: none), and the guard whose drop stops the work.
    pub fn after(timeout: Duration) -> (Deadline, ClientGuard) {
        let gone = Arc::new(AtomicBool::new(false));
        let deadline = Deadline {
            at: (!timeout.is_zero()).then(|| Instant::now() + timeout),
            timeout,
            gone: Arc::clone(&gone),
            probe: None,
        };
        (deadline, ClientGuard(gone))
    }

    /// Also asks `probe` whether the client has gone.
    pub fn watching(mut self, probe: Option<ClientProbe>) -> Deadline {
        self.probe = probe;
        self
    }

    /// `Err` once the request must stop: [`StoreError::TimedOut`] past the deadline,
    /// [`StoreError::ClientGone`] once its client has gone away.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.gone.load(Ordering::Acquire) || self.probe.as_ref().is_some_and(|gone| gone()) {
            return Err(StoreError::ClientGone);
        }
        match self.at {
            Some(at) if Instant::now() >= at => Err(StoreError::TimedOut {
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_stops_work_when_passed_or_when_the_client_goes() {
        let (deadline, guard) = Deadline::after(Duration::from_secs(60));
        assert_eq!(deadline.check(), Ok(()));
        drop(guard);
        assert_eq!(deadline.check(), Err(StoreError::ClientGone));
        let (deadline, _guard) = Deadline::after(Duration::from_secs(60));
        let deadline = deadline.watching(Some(Arc::new(|| true)));
        assert_eq!(deadline.check(), Err(StoreError::ClientGone));
        let (deadline, _guard) = Deadline::after(Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(1));
        assert!(matches!(deadline.check(), Err(StoreError::TimedOut { .. })));
        let (no_limit, _guard) = Deadline::after(Duration::ZERO);
        assert_eq!(no_limit.check(), Ok(()));
    }
}
