//! Network safety and sockets: the loopback-only target rule, spreading connections over several
//! 127.0.0.x source addresses (bind before connect) so one process is not capped by one source
//! address's ephemeral ports, the open-file limit, and TCP connects.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use tokio::net::{TcpSocket, TcpStream};

/// True for hosts this tool may target without `--allow-remote`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolve `host:port`, refusing anything but loopback unless `allow_remote`.
/// `localhost` is taken as 127.0.0.1 without asking a resolver.
pub fn resolve_target(host: &str, port: u16, allow_remote: bool) -> Result<SocketAddr, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if !allow_remote && !is_loopback_host(h) {
        return Err(format!(
            "refusing target {h:?}: this tool only loads 127.0.0.0/8, ::1 and localhost \
             unless --allow-remote is given"
        ));
    }
    if h.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (h, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {h}: {e}"))?
        .next()
        .ok_or_else(|| format!("{h} resolves to no address"))
}

/// How many ephemeral ports one source address offers (from the kernel's range).
pub fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<usize>().ok());
            let lo = it.next()??;
            let hi = it.next()??;
            (hi >= lo).then_some(hi - lo + 1)
        })
        .unwrap_or(28_232)
}

/// Source addresses to bind before connecting; empty means "let the kernel pick".
#[derive(Debug, Clone, Default)]
pub struct SourceAddrs(Vec<IpAddr>);

impl SourceAddrs {
    /// Plan the sources for `conns` connections to `target`: for an IPv4 loopback target, as many
    /// 127.0.0.x addresses (from `127.0.0.{first}`) as needed to keep each under 90% of
    /// `ports_per_addr`, or exactly `count` when given. Other targets use no binding.
    pub fn plan(
        target: IpAddr,
        conns: usize,
        ports_per_addr: usize,
        first: u8,
        count: Option<usize>,
    ) -> SourceAddrs {
        let IpAddr::V4(v4) = target else {
            return SourceAddrs::default();
        };
        if !v4.is_loopback() {
            return SourceAddrs::default();
        }
        let usable = (ports_per_addr * 9 / 10).max(1);
        let needed = count.unwrap_or_else(|| conns.div_ceil(usable));
        if needed <= 1 && count.is_none() {
            return SourceAddrs::default();
        }
        let first = first.max(1);
        let n = needed.clamp(1, 255 - first as usize);
        SourceAddrs(
            (0..n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, first + i as u8)))
                .collect(),
        )
    }

    /// The source for connection `i` (round robin), if any.
    pub fn for_conn(&self, i: usize) -> Option<IpAddr> {
        (!self.0.is_empty()).then(|| self.0[i % self.0.len()])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Connect with `TCP_NODELAY`, binding `src` first when given.
pub async fn connect(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Raise the open-file soft limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return r.rlim_max;
            }
        }
        r.rlim_cur
    }
}

/// A process's resident set size in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_pass_without_allow_remote() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
            assert!(resolve_target(ok, 5222, false).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "::2",
            "example.org",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
            assert!(resolve_target(bad, 5222, false).is_err(), "{bad}");
        }
        assert_eq!(
            resolve_target("localhost", 1, false).unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(resolve_target("10.0.0.1", 1, true).is_ok());
    }

    #[test]
    fn few_connections_need_no_source_binding() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let s = SourceAddrs::plan(lo, 10_000, 28_232, 1, None);
        assert_eq!(s.len(), 0);
        assert_eq!(s.for_conn(5), None);
    }

    #[test]
    fn many_connections_spread_round_robin_over_loopback_sources() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let s = SourceAddrs::plan(lo, 60_000, 28_232, 2, None);
        assert_eq!(s.len(), 3); // 25,408 usable per address
        assert_eq!(s.for_conn(0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.for_conn(1), Some("127.0.0.3".parse().unwrap()));
        assert_eq!(s.for_conn(3), Some("127.0.0.2".parse().unwrap()));
        let forced = SourceAddrs::plan(lo, 1, 28_232, 10, Some(2));
        assert_eq!(forced.for_conn(1), Some("127.0.0.11".parse().unwrap()));
        let capped = SourceAddrs::plan(lo, 10_000_000, 1000, 250, None);
        assert_eq!(capped.len(), 5);
        let v6 = SourceAddrs::plan("::1".parse().unwrap(), 60_000, 28_232, 1, None);
        assert_eq!(v6.len(), 0);
    }

    #[test]
    fn reads_this_process_rss() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(ephemeral_ports() > 0);
    }
}
