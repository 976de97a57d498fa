//! The `pairs` and `history` scenarios: P pairs of users exchange 1:1 chat messages in both
//! directions, closed loop (at most `--window` messages in flight per direction) or open loop
//! (`--rate` messages/s offered in total). Each message carries its send time; the receiver
//! records end-to-end latency. `history` is the same with ConnectyCube's `save_to_history=1`
//! (Parley only). After the send phase the run drains; what never arrived is reported lost.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::common::{now_ns, Common, Counters, Ctx, Report};
use crate::hist::Histogram;
use crate::xml::{self, Frame};
use crate::xmpp::{Reader, Writer};

#[derive(clap::Args, Clone, Debug)]
pub struct PairsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of pairs (2 connections each).
    #[arg(long, default_value_t = 50)]
    pub pairs: usize,
    /// Closed loop: messages in flight per direction.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub window: u32,
    /// Open loop: total messages per second offered (instead of the window).
    #[arg(long, value_parser = crate::common::parse_rate)]
    pub rate: Option<f64>,
    /// Seconds to wait for in-flight messages after the send phase.
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 5.0)]
    pub drain: f64,
    /// Extra body bytes per message.
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// First log in this many extra users (a login burst) and keep them connected and idle
    /// while the pairs run: throughput with many connected users.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
}

/// One direction of a pair: the flow-control window and its counts.
pub struct Flow {
    pub permits: Semaphore,
    pub sent: AtomicU64,
    pub recv: AtomicU64,
}

impl Flow {
    pub fn new(window: usize) -> Arc<Flow> {
        Arc::new(Flow {
            permits: Semaphore::new(window),
            sent: AtomicU64::new(0),
            recv: AtomicU64::new(0),
        })
    }
}

/// How a sender paces itself.
#[derive(Clone, Copy)]
pub enum Pace {
    Window(usize),
    /// Messages per second for this sender.
    Rate(f64),
}

/// What a sender sends.
pub enum Kind {
    Chat { save_to_history: bool },
    Groupchat,
}

/// Send to `to` until `stop`, then wait for `done` and close the stream.
#[allow(clippy::too_many_arguments)]
pub async fn sender(
    mut w: Writer,
    to: String,
    kind: Kind,
    pace: Pace,
    pad: usize,
    flow: Arc<Flow>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    mut done: watch::Receiver<bool>,
) {
    let mut seq = 0u64;
    let started = Instant::now();
    let mut tick = match pace {
        Pace::Rate(r) => {
            let period = Duration::from_secs_f64((1.0 / r.max(0.001)).clamp(0.001, 0.010));
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(t)
        }
        Pace::Window(_) => None,
    };
    let mut batch = String::new();
    'send: loop {
        if *stop.borrow() {
            break;
        }
        let n: u64 = match pace {
            Pace::Window(window) => {
                tokio::select! {
                    p = flow.permits.acquire() => match p {
                        Ok(p) => p.forget(),
                        Err(_) => break 'send,
                    },
                    _ = stop.changed() => break 'send,
                }
                let mut n = 1;
                while n < window {
                    match flow.permits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                n as u64
            }
            Pace::Rate(r) => {
                if let Some(t) = tick.as_mut() {
                    tokio::select! {
                        _ = t.tick() => {}
                        _ = stop.changed() => break 'send,
                    }
                }
                let due = (started.elapsed().as_secs_f64() * r) as u64;
                due.saturating_sub(seq).min(10_000)
            }
        };
        if n == 0 {
            continue;
        }
        batch.clear();
        let mut failed = None;
        for _ in 0..n {
            seq += 1;
            let id = format!("lg{seq}");
            let body = xml::probe_body(seq, now_ns(), pad);
            let mut one = String::new();
            let out = if w.is_ws() { &mut one } else { &mut batch };
            match kind {
                Kind::Chat { save_to_history } => {
                    xml::chat_message(out, &to, &id, &body, save_to_history)
                }
                Kind::Groupchat => xml::groupchat_message(out, &to, &id, &body),
            }
            if w.is_ws() {
                if let Err(e) = w.push(one).await {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !w.is_ws() {
            w.push_raw(&batch);
        }
        let res = match failed {
            Some(e) => Err(e),
            None => w.flush().await,
        };
        if let Err(e) = res {
            counters.xmpp_error(&e);
            break;
        }
        flow.sent.fetch_add(n, Relaxed);
        counters.sent.fetch_add(n, Relaxed);
    }
    while !*done.borrow() {
        if done.changed().await.is_err() {
            break;
        }
    }
    w.close().await;
}

/// What a receiving connection does with each measured message.
pub struct Receive {
    /// Flow whose receive count this connection's deliveries go to (1:1), if any.
    pub flow: Option<Arc<Flow>>,
    /// Release a window slot on this flow when a message from `own_from_suffix` comes back
    /// (MUC reflection of our own message).
    pub own: Option<(String, Arc<Flow>)>,
    pub release_on_receive: bool,
}

/// Read until `done`; record latency of every probe message. Returns the histogram.
pub async fn receiver(
    mut r: Reader,
    rx: Receive,
    counters: Arc<Counters>,
    mut done: watch::Receiver<bool>,
) -> Histogram {
    let mut hist = Histogram::new();
    loop {
        let f = tokio::select! {
            f = r.next() => f,
            _ = done.changed() => break,
        };
        match f {
            Ok(Frame::Element(e)) => {
                if xml::name(&e) != b"message" {
                    continue;
                }
                if xml::attr(&e, "type") == Some(b"error") {
                    counters.error("bounced", String::from_utf8_lossy(&e[..e.len().min(200)]));
                    continue;
                }
                let Some((_, t)) = xml::child_text(&e, "body").and_then(xml::parse_probe) else {
                    continue;
                };
                if xml::contains(&e, "urn:xmpp:delay") {
                    continue; // history replayed on join, not a live delivery
                }
                hist.record(now_ns().saturating_sub(t));
                counters.received.fetch_add(1, Relaxed);
                if let Some(f) = &rx.flow {
                    f.recv.fetch_add(1, Relaxed);
                    if rx.release_on_receive {
                        f.permits.add_permits(1);
                    }
                }
                if let Some((suffix, f)) = &rx.own {
                    let from = xml::attr(&e, "from").unwrap_or_default();
                    if from.ends_with(suffix.as_bytes()) {
                        f.permits.add_permits(1);
                    }
                }
            }
            Ok(Frame::StreamOpen(_)) => {}
            Ok(Frame::StreamEnd) => {
                if !*done.borrow() {
                    counters.error("closed", "server ended the stream");
                }
                break;
            }
            Err(e) => {
                if !*done.borrow() {
                    counters.xmpp_error(&e);
                }
                break;
            }
        }
    }
    hist
}

/// Wait until `delivered() >= expected()` or `drain` passes.
pub async fn drain(drain: f64, delivered: impl Fn() -> u64, expected: impl Fn() -> u64) {
    let end = Instant::now() + Duration::from_secs_f64(drain);
    while Instant::now() < end && delivered() < expected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: &PairsArgs, save_to_history: bool) -> Result<Report, String> {
    let scenario = if save_to_history { "history" } else { "pairs" };
    if save_to_history && !args.common.parley {
        return Err("history is a Parley scenario: add --parley".into());
    }
    let total = args.pairs * 2 + args.idle;
    crate::conns::check_fd_budget(total)?;
    let ctx = Ctx::new(&args.common, total)?;
    let mut users = ctx.users(total).await?;
    let idle_users = users.split_off(args.pairs * 2);
    let progress = ctx.progress(scenario);
    let (idle_done_tx, idle_done_rx) = watch::channel(false);
    let (idle_sessions, _, _) = ctx.login_all(&idle_users, true).await;
    let idle_holders: Vec<_> = idle_sessions
        .into_iter()
        .flatten()
        .map(|s| {
            tokio::spawn(crate::conns::hold(
                s,
                ctx.counters.clone(),
                idle_done_rx.clone(),
            ))
        })
        .collect();
    let idle_connected = idle_holders.len() as u64;
    let (sessions, _login_hist, _) = ctx.login_all(&users, true).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let mut flows = vec![];
    let mut readers = vec![];
    let mut writers = vec![];
    let directions = {
        let live = sessions
            .chunks(2)
            .filter(|c| c.len() == 2 && c[0].is_some() && c[1].is_some())
            .count();
        (live * 2).max(1)
    };
    let pace = match args.rate {
        Some(r) => Pace::Rate(r / directions as f64),
        None => Pace::Window(args.window as usize),
    };
    let mut it = sessions.into_iter().zip(users.iter());
    let mut live_pairs = 0;
    while let (Some((a, ua)), Some((b, ub))) = (it.next(), it.next()) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        live_pairs += 1;
        let ab = Flow::new(args.window as usize);
        let ba = Flow::new(args.window as usize);
        let closed = matches!(pace, Pace::Window(_));
        for (s, to, out, inn) in [(a, &ub.acct.jid, &ab, &ba), (b, &ua.acct.jid, &ba, &ab)] {
            readers.push(tokio::spawn(receiver(
                s.reader,
                Receive {
                    flow: Some(inn.clone()),
                    own: None,
                    release_on_receive: closed,
                },
                ctx.counters.clone(),
                done_rx.clone(),
            )));
            writers.push(tokio::spawn(sender(
                s.writer,
                to.clone(),
                Kind::Chat { save_to_history },
                pace,
                args.pad,
                out.clone(),
                ctx.counters.clone(),
                stop_rx.clone(),
                done_rx.clone(),
            )));
        }
        flows.push(ab);
        flows.push(ba);
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.common.duration)).await;
    stop_tx.send_replace(true);
    let send_secs = t0.elapsed().as_secs_f64();
    let received_in_phase = ctx.counters.received.load(Relaxed);
    let sent = || flows.iter().map(|f| f.sent.load(Relaxed)).sum::<u64>();
    let recv = || flows.iter().map(|f| f.recv.load(Relaxed)).sum::<u64>();
    // Let senders observe the stop before counting what they sent.
    tokio::time::sleep(Duration::from_millis(20)).await;
    drain(args.drain, recv, sent).await;
    done_tx.send_replace(true);
    let mut hist = Histogram::new();
    for r in readers {
        if let Ok(h) = r.await {
            hist.merge(&h);
        }
    }
    for w in writers {
        let _ = w.await;
    }
    idle_done_tx.send_replace(true);
    for h in idle_holders {
        let _ = h.await;
    }
    drop(progress);
    let (sent, recv) = (sent(), recv());
    let mut rep = Report::new(scenario, &ctx);
    rep.params.put("pairs", args.pairs as u64);
    match args.rate {
        Some(r) => rep
            .params
            .put("mode", format!("open loop, {r} msgs/s offered")),
        None => rep
            .params
            .put("mode", format!("closed loop, window {}", args.window)),
    }
    rep.params.put("duration_s", args.common.duration);
    if args.idle > 0 {
        rep.params.put("idle", args.idle as u64);
        rep.metrics.put("idle_connected", idle_connected);
    }
    rep.metrics.put("pairs_logged_in", live_pairs as u64);
    rep.metrics.put("sent", sent);
    rep.metrics.put("delivered", recv);
    rep.metrics
        .put("delivered_per_s", received_in_phase as f64 / send_secs);
    if let Some(r) = args.rate {
        rep.metrics.put("offered_per_s", r);
    }
    rep.latency = Some(hist.summary());
    rep.lost = sent.saturating_sub(recv);
    Ok(rep.finish(&ctx))
}
