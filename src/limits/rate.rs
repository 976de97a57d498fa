//! Token buckets: one for a single caller, and a map of them keyed by caller whose memory is
//! bounded (at most `max_keys` buckets; the least recently used generation is dropped first).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `rate` tokens per second, at most `burst` saved up; each event takes one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Per-key token buckets, bounded in memory: buckets live in two generations of at most
/// `max_keys / 2` each; a key used again moves to the current generation, and when the current
/// one is full the older is dropped whole. A dropped key starts again with a full bucket, so only
/// keys idle for a whole generation are forgotten.
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: f64,
    half: usize,
    gens: Mutex<Gens<K>>,
}

struct Gens<K> {
    current: HashMap<K, TokenBucket>,
    older: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate` events per second with bursts of `burst`; `rate` 0 means unlimited.
    pub fn new(rate: u32, burst: u32, max_keys: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            half: (max_keys / 2).max(1),
            gens: Mutex::new(Gens {
                current: HashMap::new(),
                older: HashMap::new(),
            }),
        }
    }

    /// `per_hour` events per hour per key, all of them at once at most; 0 means unlimited. For
    /// rare events (XMPP in-band registrations) a per-second rate cannot express.
    pub fn per_hour(per_hour: u32, max_keys: usize) -> Self {
        Self {
            rate: f64::from(per_hour) / 3600.0,
            ..Self::new(0, per_hour, max_keys)
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    /// One event for `key`: `Err(wait)` when over the rate (nothing is taken then).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.unlimited() {
            return Ok(());
        }
        let now = Instant::now();
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = g.current.get_mut(key) {
            return b.take(self.rate, self.burst, now);
        }
        let mut bucket = g
            .older
            .remove(key)
            .unwrap_or_else(|| TokenBucket::full(self.burst, now));
        let verdict = bucket.take(self.rate, self.burst, now);
        if g.current.len() >= self.half {
            g.older = std::mem::take(&mut g.current);
        }
        g.current.insert(key.clone(), bucket);
        verdict
    }

    /// Buckets held (for tests and metrics).
    pub fn tracked(&self) -> usize {
        let g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        g.current.len() + g.older.len()
    }
}

/// Whole seconds to tell a caller in `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let l = KeyedLimiter::new(1, 3, 100);
        for _ in 0..3 {
            assert!(l.check(&1).is_ok());
        }
        let wait = l.check(&1).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check(&2).is_ok(), "other keys have their own bucket");
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = KeyedLimiter::new(0, 0, 10);
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let l = KeyedLimiter::new(10, 10, 100);
        for k in 0..10_000 {
            let _ = l.check(&k);
        }
        assert!(l.tracked() <= 100, "{}", l.tracked());
    }

    #[test]
    fn a_busy_key_survives_churn_of_other_keys() {
        let l = KeyedLimiter::new(1, 2, 10);
        assert!(l.check(&-1).is_ok());
        assert!(l.check(&-1).is_ok());
        for k in 0..100 {
            let _ = l.check(&k);
            // Still limited: the busy key is touched again in every generation.
            assert!(l.check(&-1).is_err());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
