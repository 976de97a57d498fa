//! The password-guessing throttle, one rule for every adapter (XMPP SASL, `POST /session`,
//! `POST /login`): wrong passwords are counted per address and per (account, address) in a
//! one-minute window that starts at the first failure; past `passwords.failures_per_minute` a
//! password is not even checked (so guessing costs the attacker, not the argon2 pool) and the
//! caller is told when to come back.
//!
//! Deliberately **not** per account alone: that key would let anyone lock a user out by
//! guessing their password from elsewhere. A guesser with many addresses gets that many
//! windows; the per-connection and per-address limits of the adapters bound that. A live session
//! token is never subject to this throttle (a 160-bit random token cannot be guessed, and
//! checking it costs one indexed look-up): the owner keeps working while their password is
//! being guessed, even from the same address.
//!
//! IPv6 addresses count by their /64 (what one subscriber usually holds); IPv4 whole. Memory
//! is bounded by `passwords.throttle_max_keys`: expired windows go first, then the oldest.
//! Time is the server's [`Clock`], so tests move it instead of sleeping.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::model::{AppId, Clock, UserId};

/// The window, in milliseconds.
const WINDOW_MS: i64 = 60_000;

/// An address as the throttle counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Addr {
    V4(u32),
    /// The upper 64 bits.
    V6(u64),
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Addr::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Addr::V4(u32::from(v4)),
                None => Addr::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Addr(Addr),
    AccountAddr(AppId, UserId, Addr),
}

struct Window {
    failures: u32,
    start_ms: i64,
    /// Which entry of the eviction queue is this window's (an older one may linger there).
    seq: u64,
}

#[derive(Default)]
struct State {
    windows: HashMap<Key, Window>,
    /// Keys in the order their windows started (oldest first), for expiry and eviction.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
}

/// Refused: too many wrong passwords; try again in this many seconds (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

pub struct Throttle {
    max: u32,
    max_keys: usize,
    clock: Clock,
    state: Mutex<State>,
}

impl Throttle {
    pub fn new(max_per_minute: u32, max_keys: usize, clock: Clock) -> Self {
        Throttle {
            max: max_per_minute.max(1),
            max_keys: max_keys.max(1),
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn now_ms(&self) -> i64 {
        let t = self.clock.now();
        t.unix_timestamp()
            .saturating_mul(1000)
            .saturating_add(i64::from(t.millisecond()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keys(ip: IpAddr, account: Option<(AppId, UserId)>) -> impl Iterator<Item = Key> {
        let addr = Addr::from(ip);
        std::iter::once(Key::Addr(addr))
            .chain(account.map(|(app, user)| Key::AccountAddr(app, user, addr)))
    }

    /// Whether a password from `ip` (for `account`, when known) may be checked now.
    pub fn check(&self, ip: IpAddr, account: Option<(AppId, UserId)>) -> Result<(), Throttled> {
        let now = self.now_ms();
        let st = self.lock();
        let mut wait_ms = 0;
        for k in Self::keys(ip, account) {
            if let Some(w) = st.windows.get(&k) {
                let left = w.start_ms.saturating_add(WINDOW_MS) - now;
                if left > 0 && w.failures >= self.max {
                    wait_ms = wait_ms.max(left);
                }
            }
        }
        if wait_ms > 0 {
            let secs = u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1);
            return Err(Throttled {
                retry_after_secs: secs,
            });
        }
        Ok(())
    }

    /// Counts a wrong password (or a malformed attempt, `account` = `None`) from `ip`.
    pub fn failed(&self, ip: IpAddr, account: Option<(AppId, UserId)>) {
        let now = self.now_ms();
        let mut st = self.lock();
        for k in Self::keys(ip, account) {
            let live = st
                .windows
                .get(&k)
                .is_some_and(|w| now - w.start_ms < WINDOW_MS);
            if live {
                if let Some(w) = st.windows.get_mut(&k) {
                    w.failures = w.failures.saturating_add(1);
                }
                continue;
            }
            st.windows.remove(&k);
            self.make_room(&mut st, now);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.windows.insert(
                k,
                Window {
                    failures: 1,
                    start_ms: now,
                    seq,
                },
            );
            st.order.push_back((k, seq));
        }
    }

    /// Drops expired windows from the front of the queue, then the oldest live ones while the
    /// table is full.
    fn make_room(&self, st: &mut State, now: i64) {
        while let Some(&(k, seq)) = st.order.front() {
            let current = st.windows.get(&k).filter(|w| w.seq == seq);
            let drop = match current {
                None => true, // superseded entry
                Some(w) => now - w.start_ms >= WINDOW_MS || st.windows.len() >= self.max_keys,
            };
            if !drop {
                break;
            }
            st.order.pop_front();
            if current.is_some() {
                st.windows.remove(&k);
            }
        }
    }

    /// How many keys are tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.lock().windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(u: i64) -> Option<(AppId, UserId)> {
        Some((AppId(1), UserId(u)))
    }

    #[test]
    fn failures_throttle_the_address_and_the_account_from_that_address_only() {
        let t = Throttle::new(2, 100, Clock::new());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        t.failed(ip, acc(5));
        assert!(t.check(ip, acc(5)).is_ok());
        t.failed(ip, acc(5));
        assert!(t.check(ip, None).is_err());
        assert!(
            t.check(other, acc(5)).is_ok(),
            "the account is not locked from other addresses"
        );
    }

    #[test]
    fn the_window_ends_after_a_minute_of_the_servers_clock() {
        let clock = Clock::new();
        let t = Throttle::new(1, 100, clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(ip, acc(5));
        let e = t.check(ip, acc(5)).unwrap_err();
        assert!((1..=60).contains(&e.retry_after_secs));
        clock.advance(std::time::Duration::from_secs(61));
        assert!(t.check(ip, acc(5)).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let t = Throttle::new(1, 100, Clock::new());
        t.failed("2001:db8:1:2::1".parse().unwrap(), None);
        assert!(t
            .check("2001:db8:1:2::ffff".parse().unwrap(), None)
            .is_err());
        assert!(t.check("2001:db8:1:3::1".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn tracked_keys_are_bounded_and_the_oldest_go_first() {
        let t = Throttle::new(1, 3, Clock::new());
        for i in 1..=10u8 {
            t.failed(IpAddr::from([10, 0, 0, i]), None);
        }
        assert!(t.tracked() <= 3);
        assert!(t.check(IpAddr::from([10, 0, 0, 10]), None).is_err());
        assert!(t.check(IpAddr::from([10, 0, 0, 1]), None).is_ok());
    }
}
