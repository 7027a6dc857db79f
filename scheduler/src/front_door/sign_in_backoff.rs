//! Backoff after failed password sign-ins, per user name and per client address: after a few free
//! failures, each further one doubles the time during which that name, or that address, may not try
//! again (up to a cap). A refused attempt costs no password hash, so guessing is slowed to a crawl
//! and cannot burn the cores the queries and the ETL need.
//!
//! The backoff is capped, and a pair of credentials that already signed in since the start stays
//! good (see `auth.rs`), so an attacker hammering a user's name slows that user's *new* sign-ins for
//! at most the cap, never locks them out for good.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failures in a row a name or an address may have before it must wait.
const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// A record untouched this long is forgotten (its failures no longer count).
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most names and addresses remembered; when full, forgotten records go first, then the oldest.
const CAPACITY: usize = 10_000;

/// Who failed: a user name (known or not) or a client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Address(IpAddr),
}

/// The failures in a row of one subject.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    wait_until: Option<Instant>,
}

/// The failed sign-ins the server remembers, and its counters for `/metrics`.
#[derive(Debug)]
pub struct SignInBackoff {
    failures: Mutex<HashMap<Subject, Failures>>,
    first_wait: Duration,
    max_wait: Duration,
    failed: AtomicU64,
    refused: AtomicU64,
}

impl Default for SignInBackoff {
    fn default() -> Self {
        SignInBackoff::with_waits(FIRST_WAIT, MAX_WAIT)
    }
}

impl SignInBackoff {
    /// A backoff with other waits than the default (tests).
    pub fn with_waits(first_wait: Duration, max_wait: Duration) -> SignInBackoff {
        SignInBackoff {
            failures: Mutex::new(HashMap::new()),
            first_wait,
            max_wait,
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn subjects(user: &str, address: Option<IpAddr>) -> impl Iterator<Item = Subject> {
        std::iter::once(Subject::User(user.to_string())).chain(address.map(Subject::Address))
    }

    /// `Err(wait)` when `user` or `address` must still wait that long before trying again.
    pub fn check(&self, user: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        self.wait_for(SignInBackoff::subjects(user, address))
    }

    /// `Err(wait)` when `address` must still wait, whatever the name: what a sign-in that succeeded
    /// before must pass, so that no address can try passwords against remembered ones at full speed.
    pub fn check_address(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        self.wait_for(address.map(Subject::Address).into_iter())
    }

    fn wait_for(&self, subjects: impl Iterator<Item = Subject>) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let wait = subjects
            .filter_map(|subject| failures.get(&subject)?.wait_until)
            .filter_map(|until| until.checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(wait)
            }
            _ => Ok(()),
        }
    }

    /// Records a wrong password for `user` from `address`.
    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= CAPACITY {
            make_room(&mut failures, now);
        }
        for subject in SignInBackoff::subjects(user, address) {
            let entry = failures.entry(subject).or_insert(Failures { count: 0, last: now, wait_until: None });
            if now.duration_since(entry.last) > FORGET_AFTER {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            if entry.count > FREE_FAILURES {
                let doublings = (entry.count - FREE_FAILURES - 1).min(16);
                let wait = self.first_wait.saturating_mul(1 << doublings).min(self.max_wait);
                entry.wait_until = Some(now + wait);
                if entry.count == FREE_FAILURES + 1 {
                    tracing::warn!(
                        subject = %describe(&SignInBackoff::subjects(user, address).collect::<Vec<_>>()),
                        "Repeated failed sign-ins: further attempts wait."
                    );
                }
            }
        }
    }

    /// Records a good password: `user` and `address` start again with no failures.
    pub fn succeeded(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for subject in SignInBackoff::subjects(user, address) {
            failures.remove(&subject);
        }
    }

    /// Wrong passwords since start.
    pub fn failed_total(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Attempts refused unchecked because their name or address had to wait.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Drops forgotten records, then, if still full, the least recently failed half.
fn make_room(failures: &mut HashMap<Subject, Failures>, now: Instant) {
    failures.retain(|_, f| now.duration_since(f.last) <= FORGET_AFTER);
    if failures.len() >= CAPACITY {
        let mut lasts: Vec<Instant> = failures.values().map(|f| f.last).collect();
        lasts.sort_unstable();
        let cut = lasts[lasts.len() / 2];
        failures.retain(|_, f| f.last > cut);
    }
}

/// "user \"ana\", address 10.0.0.9" for the log.
fn describe(subjects: &[Subject]) -> String {
    subjects
        .iter()
        .map(|s| match s {
            Subject::User(name) => format!("user {name:?}"),
            Subject::Address(address) => format!("address {address}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66)));
    const NURSE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)));

    #[test]
    fn after_the_free_failures_a_name_and_an_address_wait_longer_each_time_up_to_the_cap() {
        let backoff = SignInBackoff::with_waits(Duration::from_secs(1), Duration::from_secs(4));
        for _ in 0..FREE_FAILURES {
            assert!(backoff.check("ana", ATTACKER).is_ok());
            backoff.failed("ana", ATTACKER);
        }
        assert!(backoff.check("ana", ATTACKER).is_ok(), "the free failures cost no wait");
        let mut waits = Vec::new();
        for _ in 0..4 {
            backoff.failed("ana", ATTACKER);
            waits.push(backoff.check("ana", ATTACKER).expect_err("must wait"));
        }
        let secs: Vec<u64> = waits.iter().map(|w| w.as_secs_f64().round() as u64).collect();
        assert_eq!(secs, [1, 2, 4, 4]);
        // The name waits from any address, the address for any name.
        assert!(backoff.check("ana", NURSE).is_err());
        assert!(backoff.check("bob", ATTACKER).is_err());
        assert!(backoff.check("bob", NURSE).is_ok());
        assert_eq!(backoff.failed_total(), 9);
        assert_eq!(backoff.refused_total(), 6);
    }

    #[test]
    fn a_good_password_clears_the_failures_of_its_name_and_address() {
        let backoff = SignInBackoff::with_waits(Duration::from_millis(20), Duration::from_millis(20));
        for _ in 0..=FREE_FAILURES {
            backoff.failed("ana", NURSE);
        }
        assert!(backoff.check("ana", NURSE).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(backoff.check("ana", NURSE).is_ok(), "the wait ends");
        backoff.succeeded("ana", NURSE);
        backoff.failed("ana", NURSE);
        assert!(backoff.check("ana", NURSE).is_ok(), "counting starts again after a success");
    }

    #[test]
    fn the_memory_stays_bounded_under_a_spray_of_names() {
        let backoff = SignInBackoff::default();
        for i in 0..(CAPACITY * 2) {
            backoff.failed(&format!("user-{i}"), None);
        }
        assert!(backoff.failures.lock().unwrap().len() <= CAPACITY);
    }
}
