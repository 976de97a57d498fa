//! `loadgen`: a load generator for XMPP servers (Parley, ejabberd, Prosody, any other) and for
//! Parley's REST API. Every run is bounded in time and count and targets loopback only unless
//! `--allow-remote`. Module map:
//!
//! - `common`  — shared options, run context, accounts, logins, progress line, report
//! - `conns`   — N idle authenticated connections: login rate, server RSS per connection
//! - `pairs`   — 1:1 message pairs (and `history` with save_to_history): throughput, latency
//! - `muc`     — XEP-0045 rooms: deliveries/s and latency
//! - `rest`    — Parley REST mix: requests/s and latency per endpoint
//! - `relay`   — a minimal byte-scanning XMPP relay to calibrate the generator against
//! - `xmpp`    — client connections over TCP, STARTTLS, TLS, WebSocket; SASL PLAIN; bind
//! - `xml`     — byte-scanning framer, look-ups and stanza builders
//! - `parley`  — provisioning through Parley's REST API
//! - `http`    — a minimal HTTP/1.1 keep-alive client
//! - `net`     — loopback rule, source-address spreading, open-file limit, RSS
//! - `hist`    — mergeable latency histogram

mod common;
mod conns;
mod hist;
mod http;
mod muc;
mod net;
mod pairs;
mod parley;
mod relay;
mod rest;
mod xml;
mod xmpp;

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;

use common::{Common, Ctx, Report};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Bounded, loopback-only load generator for XMPP servers and Parley's REST API"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N authenticated idle connections: login rate, RSS per connection.
    Conns(conns::ConnsArgs),
    /// P pairs exchanging 1:1 messages: delivered msgs/s, end-to-end latency.
    Pairs(pairs::PairsArgs),
    /// Rooms of K occupants, S senders: deliveries/s, latency.
    Muc(muc::MucArgs),
    /// Like pairs, with save_to_history=1 (Parley only).
    History(pairs::PairsArgs),
    /// Parley REST mix: requests/s and latency per endpoint.
    Rest(rest::RestArgs),
    /// Create users user{i} by in-band registration (XEP-0077), for ejabberd/Prosody set-up.
    Register(RegisterArgs),
    /// A minimal XMPP relay (any login, 1:1 only) to measure the generator's own ceiling.
    Relay(relay::RelayArgs),
}

#[derive(clap::Args, Debug)]
struct RegisterArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    count: usize,
}

impl Scenario {
    /// The client options (the relay has none).
    fn common(&self) -> Option<&Common> {
        match self {
            Scenario::Conns(a) => Some(&a.common),
            Scenario::Pairs(a) | Scenario::History(a) => Some(&a.common),
            Scenario::Muc(a) => Some(&a.common),
            Scenario::Rest(a) => Some(&a.common),
            Scenario::Register(a) => Some(&a.common),
            Scenario::Relay(_) => None,
        }
    }

    /// Longest time the whole run may take, after which the process exits regardless.
    fn hard_limit(&self, c: &Common) -> Duration {
        let extra = match self {
            Scenario::Pairs(a) | Scenario::History(a) => a.drain,
            Scenario::Muc(a) => a.drain,
            Scenario::Conns(a) => a.settle,
            _ => 0.0,
        };
        Duration::from_secs_f64(c.setup_timeout + c.duration + extra + 30.0)
    }
}

async fn register(args: &RegisterArgs) -> Result<Report, String> {
    let ctx = Ctx::new(&args.common, args.count)?;
    let users = ctx.users(args.count).await?;
    let progress = ctx.progress("register");
    let t0 = std::time::Instant::now();
    let timeout = Duration::from_secs_f64(args.common.login_timeout);
    let results: Vec<Option<bool>> = futures_util::stream::iter(users.iter())
        .map(|u| {
            let ctx = &ctx;
            async move {
                match tokio::time::timeout(
                    timeout,
                    xmpp::register(&ctx.ep, &u.acct.authcid, &u.acct.password),
                )
                .await
                {
                    Ok(Ok(created)) => {
                        ctx.counters.requests.fetch_add(1, Relaxed);
                        Some(created)
                    }
                    Ok(Err(e)) => {
                        ctx.counters.xmpp_error(&e);
                        None
                    }
                    Err(_) => {
                        ctx.counters.xmpp_error(&xmpp::XmppError::Timeout);
                        None
                    }
                }
            }
        })
        .buffered(args.common.concurrency.max(1))
        .collect()
        .await;
    drop(progress);
    let mut rep = Report::new("register", &ctx);
    rep.params.put("count", args.count as u64);
    rep.metrics.put(
        "created",
        results.iter().filter(|r| **r == Some(true)).count() as u64,
    );
    rep.metrics.put(
        "existed",
        results.iter().filter(|r| **r == Some(false)).count() as u64,
    );
    rep.metrics.put("seconds", t0.elapsed().as_secs_f64());
    Ok(rep.finish(&ctx))
}

fn relay_main(args: &relay::RelayArgs) -> ExitCode {
    net::raise_nofile();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(relay::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(common) = cli.scenario.common().cloned() else {
        return match &cli.scenario {
            Scenario::Relay(a) => relay_main(a),
            _ => ExitCode::from(2),
        };
    };
    net::raise_nofile();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = common.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Watchdog: a run never outlives its bounds, whatever a server does.
    let limit = cli.scenario.hard_limit(&common);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("loadgen: hard time limit of {limit:?} reached, exiting");
        std::process::exit(3);
    });
    let _ = common::now_ns();
    let result = rt.block_on(async {
        match &cli.scenario {
            Scenario::Conns(a) => conns::run(a).await,
            Scenario::Pairs(a) => pairs::run(a, false).await,
            Scenario::History(a) => pairs::run(a, true).await,
            Scenario::Muc(a) => muc::run(a).await,
            Scenario::Rest(a) => rest::run(a).await,
            Scenario::Register(a) => register(a).await,
            Scenario::Relay(_) => Err("relay runs on its own".into()),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(rep) => {
            // A closed stdout (e.g. `| head`) must not turn a finished run into a panic.
            let text = if common.json {
                eprintln!("RESULT: {}", rep.verdict);
                serde_json::to_string(&rep).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                    + "\n"
            } else {
                rep.render_table()
            };
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
