//! SASL failure throttling: failed attempts counted per IP address and per account in a
//! one-minute window; beyond the configured number, authentication is refused without checking
//! the secret (so password guessing costs the attacker, not the argon2 pool).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::xmpp::stanza::UserKey;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Account(UserKey),
}

pub struct AuthThrottle {
    max: u32,
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl AuthThrottle {
    pub fn new(max_per_minute: u32) -> Self {
        AuthThrottle {
            max: max_per_minute,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, key: Key, now: Instant) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key) {
            Some((n, since)) if now.duration_since(*since) < WINDOW => *n,
            _ => 0,
        }
    }

    /// True when another attempt from `ip` for `account` may be checked.
    pub fn allowed(&self, ip: IpAddr, account: Option<UserKey>) -> bool {
        let now = Instant::now();
        self.count(Key::Ip(ip), now) < self.max
            && account.map_or(true, |a| self.count(Key::Account(a), now) < self.max)
    }

    pub fn failed(&self, ip: IpAddr, account: Option<UserKey>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let keys = std::iter::once(Key::Ip(ip)).chain(account.map(Key::Account));
        for k in keys {
            let e = map.entry(k).or_insert((0, now));
            if now.duration_since(e.1) >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, UserId};

    #[test]
    fn failures_beyond_the_limit_block_ip_and_account() {
        let t = AuthThrottle::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let acc = Some(UserKey {
            app: AppId(1),
            user: UserId(5),
        });
        t.failed(ip, acc);
        assert!(t.allowed(ip, acc));
        t.failed(ip, acc);
        assert!(!t.allowed(ip, None));
        assert!(
            !t.allowed(other, acc),
            "the account is throttled from any address"
        );
        assert!(t.allowed(other, None));
    }
}
