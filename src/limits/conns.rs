//! Connection caps: in total and per IP address (IPv6 per /64, what one host usually holds).
//! A permit is held for a connection's life; dropping it gives the slot back, and an address
//! whose count reaches zero leaves the map, so the map never holds more entries than open
//! connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnRefusal {
    /// The server holds its configured maximum of connections.
    Total,
    /// This address holds its configured maximum.
    PerIp,
}

/// Counts open connections of one listener family (REST, or every XMPP listener together).
pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; the slot is given back on drop.
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

/// The address a per-IP cap counts: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl ConnLimiter {
    /// 0 means unlimited, for either cap.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            state: Mutex::new(State::default()),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, ConnRefusal> {
        let key = ip_key(ip);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.max_total > 0 && s.total >= self.max_total {
            return Err(ConnRefusal::Total);
        }
        let n = s.per_ip.get(&key).copied().unwrap_or(0);
        if self.max_per_ip > 0 && n >= self.max_per_ip {
            return Err(ConnRefusal::PerIp);
        }
        s.per_ip.insert(key, n + 1);
        s.total += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            key,
        })
    }

    /// Open connections counted (in total, and addresses tracked).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.total, s.per_ip.len())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut s = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_ip.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_counts_each_address_alone() {
        let l = ConnLimiter::new(0, 2);
        let a = [l.try_acquire(ip("10.0.0.1")), l.try_acquire(ip("10.0.0.1"))];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(
            l.try_acquire(ip("10.0.0.1")).err(),
            Some(ConnRefusal::PerIp)
        );
        assert!(l.try_acquire(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn total_cap_and_slots_come_back_on_drop() {
        let l = ConnLimiter::new(1, 0);
        let p = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.2")).err(),
            Some(ConnRefusal::Total)
        );
        drop(p);
        assert_eq!(l.counts(), (0, 0), "an address at zero leaves the map");
        assert!(l.try_acquire(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        let l = ConnLimiter::new(0, 1);
        let _p = l.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2::ffff")).err(),
            Some(ConnRefusal::PerIp)
        );
        assert!(l.try_acquire(ip("2001:db8:1:3::1")).is_ok());
        let _q = l.try_acquire(ip("::ffff:10.1.1.1")).unwrap();
        assert!(
            l.try_acquire(ip("10.1.1.1")).is_err(),
            "mapped IPv4 is IPv4"
        );
    }
}
