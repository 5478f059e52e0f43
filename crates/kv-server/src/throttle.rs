//! Throttling of API-key guessing. Each client address may present a wrong key `limit` times
//! (`--wrong-key-limit`, 10 by default); after that it earns one more try every minute /
//! `limit`, and until then every request from it that presents a key is answered
//! `429 too_many_wrong_keys` with `Retry-After`, without the key being checked: a guesser gets
//! `limit` guesses a minute, not line rate. Requests without a key are not counted (they guess
//! nothing; they get `401`). A limit of 0 turns throttling off.
//!
//! Addresses are counted apart, so a correct key from any other address is never throttled by
//! someone else's failures. IPv6 addresses count by their /64 (one host usually holds a whole
//! /64). Behind a reverse proxy every client has the proxy's address, so one guesser throttles
//! all of them: let the proxy limit failed authentications there (see docs/SECURITY.md).
//!
//! Memory is bounded: at most `MAX_ADDRESSES` addresses are tracked; when full, addresses
//! whose budget has refilled are dropped first, and if none has, the table starts afresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Wrong keys an address may present a minute by default (`--wrong-key-limit`).
pub const DEFAULT_LIMIT: u32 = 10;

/// Addresses tracked at most.
const MAX_ADDRESSES: usize = 100_000;

/// One address's budget of wrong keys, as a token bucket.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn refilled(self, now: Instant, limit: u32) -> Budget {
        let earned = now.duration_since(self.at).as_secs_f64() / refill(limit).as_secs_f64();
        Budget {
            tokens: (self.tokens + earned).min(f64::from(limit)),
            at: now,
        }
    }
}

/// How long an address waits for each further try.
fn refill(limit: u32) -> Duration {
    Duration::from_secs(60) / limit.max(1)
}

#[derive(Debug, Default)]
pub struct KeyThrottle {
    /// Wrong keys an address may present a minute; 0: no throttling.
    limit: u32,
    budgets: Mutex<HashMap<IpAddr, Budget>>,
    /// Addresses in `budgets`: while none presented a wrong key, a request with a key takes
    /// no lock.
    tracked: AtomicUsize,
}

/// The part of an address that is counted: IPv4 as is, IPv6 by its /64 (IPv4-mapped ones as
/// IPv4).
fn counted(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl KeyThrottle {
    /// `limit` wrong keys a minute per address (0: no throttling).
    pub fn new(limit: u32) -> KeyThrottle {
        KeyThrottle {
            limit,
            budgets: Mutex::default(),
            tracked: AtomicUsize::new(0),
        }
    }

    /// `Some(wait)` when `addr` has no try left now: how long until it has one.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let budgets = self.budgets.lock().ok()?;
        let budget = budgets.get(&counted(addr))?.refilled(now, self.limit);
        (budget.tokens < 1.0).then(|| {
            refill(self.limit)
                .mul_f64(1.0 - budget.tokens)
                .max(Duration::from_secs(1))
        })
    }

    /// `addr` presented a wrong key: one try used.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let limit = self.limit;
        if limit == 0 {
            return;
        }
        let Ok(mut budgets) = self.budgets.lock() else {
            return;
        };
        let addr = counted(addr);
        if budgets.len() >= MAX_ADDRESSES && !budgets.contains_key(&addr) {
            budgets.retain(|_, b| b.refilled(now, limit).tokens < f64::from(limit));
            if budgets.len() >= MAX_ADDRESSES {
                budgets.clear();
            }
        }
        let budget = budgets.entry(addr).or_insert(Budget {
            tokens: f64::from(limit),
            at: now,
        });
        let mut next = budget.refilled(now, limit);
        next.tokens = (next.tokens - 1.0).max(0.0);
        *budget = next;
        self.tracked.store(budgets.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_wrong_keys_then_one_try_every_six_seconds_per_address() {
        const BURST: u32 = DEFAULT_LIMIT;
        const REFILL: Duration = Duration::from_secs(6);
        let throttle = KeyThrottle::new(DEFAULT_LIMIT);
        let start = Instant::now();
        let guesser: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..BURST {
            assert_eq!(throttle.blocked(guesser, start), None);
            throttle.failed(guesser, start);
        }
        let wait = throttle.blocked(guesser, start).expect("blocked");
        assert_eq!(wait, REFILL);
        assert_eq!(
            throttle.blocked(other, start),
            None,
            "others are not throttled"
        );
        assert!(throttle.blocked(guesser, start + REFILL / 2).is_some());
        assert_eq!(
            throttle.blocked(guesser, start + REFILL),
            None,
            "one try earned"
        );
        throttle.failed(guesser, start + REFILL);
        assert!(throttle.blocked(guesser, start + REFILL).is_some());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        const BURST: u32 = DEFAULT_LIMIT;
        let throttle = KeyThrottle::new(DEFAULT_LIMIT);
        let now = Instant::now();
        for i in 0..BURST {
            let addr: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ip");
            throttle.failed(addr, now);
        }
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert!(throttle.blocked(neighbour, now).is_some());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(throttle.blocked(elsewhere, now), None);

        for _ in 0..BURST {
            throttle.failed("::ffff:192.0.2.9".parse().expect("ip"), now);
        }
        assert!(
            throttle
                .blocked("192.0.2.9".parse().expect("ip"), now)
                .is_some()
        );
    }
}
