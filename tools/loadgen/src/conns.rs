//! The `conns` scenario: N authenticated idle connections opened `--concurrency` at a time,
//! held for `--duration` seconds, then closed. Reports the login rate and latency, connections
//! the server dropped while idle, and — with `--server-pid` — the server's RSS before and after
//! and RSS per connection. One process holds at most its open-file limit (20,000 here): run
//! several processes with distinct `--first-user` and `--src-first` for more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::common::{Common, Counters, Ctx, Report};
use crate::net;
use crate::xml::Frame;
use crate::xmpp::Session;

#[derive(clap::Args, Clone, Debug)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// PID of the server process, to read its RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Do not send initial presence after binding.
    #[arg(long)]
    pub no_presence: bool,
    /// Seconds to wait after the last login before reading RSS.
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 2.0)]
    pub settle: f64,
}

/// Keep an idle session open until `done`, reading (and dropping) whatever arrives; true when
/// the server dropped it first (counted as an error).
pub async fn hold(s: Session, counters: Arc<Counters>, mut done: watch::Receiver<bool>) -> bool {
    let mut r = s.reader;
    let dropped = loop {
        tokio::select! {
            f = r.next() => match f {
                Ok(Frame::StreamEnd) => {
                    counters.error("closed", "server ended an idle stream");
                    break true;
                }
                Ok(_) => {}
                Err(e) => {
                    counters.xmpp_error(&e);
                    break true;
                }
            },
            _ = done.changed() => break false,
        }
    };
    s.writer.close().await;
    dropped
}

/// Refuse a run that needs more descriptors than this process may open.
pub fn check_fd_budget(conns: usize) -> Result<(), String> {
    let limit = net::raise_nofile() as usize;
    if conns + 64 > limit {
        return Err(format!(
            "{conns} connections need more than this process's open-file limit ({limit}); \
             run several processes (see tools/loadgen/README.md)"
        ));
    }
    Ok(())
}

pub async fn run(args: &ConnsArgs) -> Result<Report, String> {
    check_fd_budget(args.count)?;
    let ctx = Ctx::new(&args.common, args.count)?;
    let users = ctx.users(args.count).await?;
    let rss0 = args.server_pid.and_then(net::rss_kib);
    let progress = ctx.progress("conns");
    let (sessions, login_hist, login_time) = ctx.login_all(&users, !args.no_presence).await;
    let ok = sessions.iter().filter(|s| s.is_some()).count();
    let (done_tx, done_rx) = watch::channel(false);
    let mut holders = Vec::with_capacity(ok);
    for s in sessions.into_iter().flatten() {
        holders.push(tokio::spawn(hold(s, ctx.counters.clone(), done_rx.clone())));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss1 = args.server_pid.and_then(net::rss_kib);
    let hold = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.common.duration)).await;
    let rss2 = args.server_pid.and_then(net::rss_kib);
    let held = hold.elapsed().as_secs_f64();
    done_tx.send_replace(true);
    let mut dropped = 0u64;
    for h in holders {
        if let Ok(true) = h.await {
            dropped += 1;
        }
    }
    drop(progress);
    let mut rep = Report::new("conns", &ctx);
    rep.params.put("count", args.count as u64);
    rep.params
        .put("concurrency", args.common.concurrency as u64);
    rep.params.put("presence", !args.no_presence);
    rep.params
        .put("source_addresses", ctx.src.len().max(1) as u64);
    rep.metrics.put("connected", ok as u64);
    rep.metrics.put("failed", (args.count - ok) as u64);
    rep.metrics.put("login_phase_s", login_time.as_secs_f64());
    rep.metrics.put(
        "logins_per_s",
        ok as f64 / login_time.as_secs_f64().max(1e-9),
    );
    rep.metrics.put("held_s", held);
    rep.metrics.put("dropped_while_idle", dropped);
    if let (Some(a), Some(b), Some(c)) = (rss0, rss1, rss2) {
        rep.metrics.put("server_rss_before_kib", a);
        rep.metrics.put("server_rss_after_login_kib", b);
        rep.metrics.put("server_rss_end_kib", c);
        if ok > 0 {
            rep.metrics
                .put("rss_per_conn_kib", (c.max(b) as f64 - a as f64) / ok as f64);
        }
    } else if let Some(pid) = args.server_pid {
        ctx.counters
            .error("rss", format!("cannot read /proc/{pid}/status"));
    }
    rep.latency_of = "login";
    rep.latency = Some(login_hist.summary());
    Ok(rep.finish(&ctx))
}
