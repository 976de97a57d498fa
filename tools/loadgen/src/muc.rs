//! The `muc` scenario (XEP-0045): R rooms of K occupants each join by presence (the first
//! occupant creates the room and accepts it as an instant room), then S senders per room send
//! groupchat messages, closed loop on their own reflected copy (`--window`) or open loop
//! (`--rate` messages/s in total). Every occupant, the sender included, should receive each
//! message: deliveries = messages × occupants; what is missing after the drain is lost.
//! With `--parley` the rooms are group dialogs created over REST (their `xmpp_room_jid`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::common::{Common, Ctx, Report};
use crate::hist::Histogram;
use crate::pairs::{drain, receiver, sender, Flow, Kind, Pace, Receive};
use crate::xml;
use crate::xmpp::{Session, XmppError};

#[derive(clap::Args, Clone, Debug)]
pub struct MucArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Occupants per room.
    #[arg(long, default_value_t = 100)]
    pub occupants: usize,
    /// Senders per room (the first occupants).
    #[arg(long, default_value_t = 5)]
    pub senders: usize,
    /// Closed loop: messages in flight per sender (until its own copy comes back).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub window: u32,
    /// Open loop: total messages per second offered (instead of the window).
    #[arg(long, value_parser = crate::common::parse_rate)]
    pub rate: Option<f64>,
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 5.0)]
    pub drain: f64,
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// Do not join by presence: rely on the server's own occupancy (Parley's group dialogs
    /// deliver to their occupants without a MUC join).
    #[arg(long)]
    pub no_join: bool,
}

/// Join `room` as `nick`; the creator also accepts the default configuration.
async fn join(s: &mut Session, room: &str, nick: &str, creator: bool) -> Result<(), XmppError> {
    s.writer.send(xml::muc_join(room, nick)).await?;
    let me = format!("{room}/{nick}");
    loop {
        let e = s.reader.element().await?;
        if xml::name(&e) != b"presence" || xml::attr(&e, "from") != Some(me.as_bytes()) {
            continue;
        }
        if xml::attr(&e, "type") == Some(b"error") {
            return Err(XmppError::Protocol(format!(
                "join {room} refused: {}",
                String::from_utf8_lossy(&e)
            )));
        }
        break;
    }
    if creator {
        s.writer.send(xml::muc_instant_room(room, "cfg1")).await?;
        loop {
            let e = s.reader.element().await?;
            if xml::name(&e) == b"iq" && xml::attr(&e, "id") == Some(b"cfg1") {
                break; // an error reply just means the room needed no configuration
            }
        }
    }
    Ok(())
}

pub async fn run(args: &MucArgs) -> Result<Report, String> {
    let k = args.occupants.max(1);
    let n = args.rooms * k;
    let ctx = Ctx::new(&args.common, n)?;
    let users = ctx.users(n).await?;
    let run_id = format!(
        "{:x}",
        std::process::id() ^ (crate::common::now_ns() as u32)
    );
    let mut room_jids = vec![];
    if let Some(api) = &ctx.api {
        let mut c = api.client();
        for (r, members) in users.chunks(k).enumerate() {
            let Some(owner) = members[0].parley.as_ref() else {
                return Err("Parley users without REST identity".into());
            };
            let ids: Vec<u64> = members
                .iter()
                .filter_map(|u| u.parley.as_ref())
                .map(|p| p.id)
                .collect();
            let d = api
                .create_group(
                    &mut c,
                    &owner.token,
                    &format!("loadgen {run_id} room {r}"),
                    &ids,
                )
                .await?;
            room_jids.push(d.room_jid);
        }
    } else {
        for r in 0..args.rooms {
            room_jids.push(format!("lg{run_id}r{r}@{}", ctx.muc_domain));
        }
    }
    let progress = ctx.progress("muc");
    let (sessions, _, _) = ctx.login_all(&users, true).await;
    let timeout = Duration::from_secs_f64(args.common.login_timeout);
    // Creators first, then everyone else concurrently.
    let mut slots: Vec<Option<Session>> = sessions;
    for (r, room) in room_jids.iter().enumerate() {
        if args.no_join {
            break;
        }
        let i = r * k;
        if let Some(s) = slots[i].as_mut() {
            match tokio::time::timeout(timeout, join(s, room, &users[i].nick, true)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    ctx.counters.error("join", &e);
                    slots[i] = None;
                }
                Err(_) => {
                    ctx.counters.error("join", "timed out");
                    slots[i] = None;
                }
            }
        }
    }
    let no_join = args.no_join;
    let joined: Vec<Option<Session>> = futures_util::stream::iter(slots.into_iter().enumerate())
        .map(|(i, s)| {
            let room = room_jids[i / k].clone();
            let nick = users[i].nick.clone();
            let counters = ctx.counters.clone();
            async move {
                let mut s = s?;
                if i % k == 0 || no_join {
                    return Some(s);
                }
                match tokio::time::timeout(timeout, join(&mut s, &room, &nick, false)).await {
                    Ok(Ok(())) => Some(s),
                    Ok(Err(e)) => {
                        counters.error("join", e);
                        None
                    }
                    Err(_) => {
                        counters.error("join", "timed out");
                        None
                    }
                }
            }
        })
        .buffered(args.common.concurrency.max(1))
        .collect()
        .await;
    let present: Vec<u64> = (0..args.rooms)
        .map(|r| {
            joined[r * k..(r + 1) * k]
                .iter()
                .filter(|s| s.is_some())
                .count() as u64
        })
        .collect();
    let senders_total: usize = (0..args.rooms)
        .map(|r| {
            joined[r * k..r * k + args.senders.min(k)]
                .iter()
                .filter(|s| s.is_some())
                .count()
        })
        .sum();
    let pace = match args.rate {
        Some(rate) => Pace::Rate(rate / senders_total.max(1) as f64),
        None => Pace::Window(args.window as usize),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let mut readers = vec![];
    let mut writers = vec![];
    let mut room_flows: Vec<Vec<Arc<Flow>>> = vec![vec![]; args.rooms];
    for (i, s) in joined.into_iter().enumerate() {
        let Some(s) = s else { continue };
        let (r, room) = (i / k, &room_jids[i / k]);
        let is_sender = i % k < args.senders;
        let own = if is_sender {
            let f = Flow::new(args.window as usize);
            room_flows[r].push(f.clone());
            writers.push(tokio::spawn(sender(
                s.writer,
                room.clone(),
                Kind::Groupchat,
                pace,
                args.pad,
                f.clone(),
                ctx.counters.clone(),
                stop_rx.clone(),
                done_rx.clone(),
            )));
            Some((format!("/{}", users[i].nick), f))
        } else {
            writers.push(tokio::spawn(idle_writer(s.writer, done_rx.clone())));
            None
        };
        readers.push(tokio::spawn(receiver(
            s.reader,
            Receive {
                flow: None,
                own: if matches!(pace, Pace::Window(_)) {
                    own
                } else {
                    None
                },
                release_on_receive: false,
            },
            ctx.counters.clone(),
            done_rx.clone(),
        )));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.common.duration)).await;
    stop_tx.send_replace(true);
    let secs = t0.elapsed().as_secs_f64();
    let delivered_in_phase = ctx.counters.received.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let sent_per_room = || -> Vec<u64> {
        room_flows
            .iter()
            .map(|fs| fs.iter().map(|f| f.sent.load(Relaxed)).sum())
            .collect()
    };
    let expected = || -> u64 {
        sent_per_room()
            .iter()
            .zip(&present)
            .map(|(s, p)| s * p)
            .sum()
    };
    let delivered = || ctx.counters.received.load(Relaxed);
    drain(args.drain, delivered, expected).await;
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
    drop(progress);
    let sent: u64 = sent_per_room().iter().sum();
    let (exp, got) = (expected(), delivered());
    let mut rep = Report::new("muc", &ctx);
    rep.params.put("rooms", args.rooms as u64);
    rep.params.put("occupants", k as u64);
    rep.params
        .put("senders_per_room", args.senders.min(k) as u64);
    match args.rate {
        Some(r) => rep
            .params
            .put("mode", format!("open loop, {r} msgs/s offered")),
        None => rep
            .params
            .put("mode", format!("closed loop, window {}", args.window)),
    }
    rep.params.put("duration_s", args.common.duration);
    rep.metrics
        .put("occupants_ready", present.iter().sum::<u64>());
    rep.metrics.put("sent", sent);
    rep.metrics.put("deliveries_expected", exp);
    rep.metrics.put("deliveries", got);
    rep.metrics.put("sent_per_s", sent as f64 / secs);
    rep.metrics
        .put("deliveries_per_s", delivered_in_phase as f64 / secs);
    rep.latency = Some(hist.summary());
    rep.lost = exp.saturating_sub(got);
    Ok(rep.finish(&ctx))
}

/// A non-sending occupant's writer: kept open until the run ends, then closed.
async fn idle_writer(w: crate::xmpp::Writer, mut done: watch::Receiver<bool>) {
    while !*done.borrow() {
        if done.changed().await.is_err() {
            break;
        }
    }
    w.close().await;
}
