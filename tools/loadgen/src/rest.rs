//! The `rest` scenario (Parley only): W workers, each a user with its own session token and a
//! group dialog, issue a weighted mix of `POST /chat/Message`, `GET /chat/Message`,
//! `GET /chat/Dialog` and `GET /chat/Message/unread` over one kept-alive connection each.
//! Reports requests/s and latency per endpoint; non-2xx answers are errors.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{now_ns, Common, Ctx, Report};
use crate::hist::Histogram;

#[derive(clap::Args, Clone, Debug)]
pub struct RestArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent workers (users), one connection each.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Weights: post, list (GET /chat/Message), dialogs (GET /chat/Dialog), unread.
    #[arg(long, default_value = "post=2,list=1,dialogs=1,unread=1")]
    pub mix: String,
    /// Stop after this many requests in total (default: only --duration bounds the run).
    #[arg(long)]
    pub requests: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Post,
    List,
    Dialogs,
    Unread,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Post => "POST /chat/Message",
            Endpoint::List => "GET /chat/Message",
            Endpoint::Dialogs => "GET /chat/Dialog",
            Endpoint::Unread => "GET /chat/Message/unread",
        }
    }
}

/// Parse `post=2,list=1,…` into a repeating schedule.
pub fn parse_mix(mix: &str) -> Result<Vec<Endpoint>, String> {
    let mut out = vec![];
    for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "1"));
        let e = match k {
            "post" => Endpoint::Post,
            "list" => Endpoint::List,
            "dialogs" => Endpoint::Dialogs,
            "unread" => Endpoint::Unread,
            _ => return Err(format!("--mix: unknown endpoint {k:?}")),
        };
        let n: usize = v.parse().map_err(|_| format!("--mix: bad weight {v:?}"))?;
        out.extend(std::iter::repeat_n(e, n.min(100)));
    }
    if out.is_empty() {
        return Err("--mix: no endpoint has a weight".into());
    }
    Ok(out)
}

pub async fn run(args: &RestArgs) -> Result<Report, String> {
    if !args.common.parley {
        return Err("rest is a Parley scenario: add --parley".into());
    }
    let schedule = parse_mix(&args.mix)?;
    let ctx = Ctx::new(&args.common, 0)?;
    let Some(api) = ctx.api.clone() else {
        return Err("--parley needs --api".into());
    };
    let users = ctx.users(args.workers + 1).await?;
    let partner = users[0].parley.clone().ok_or("no REST identity")?;
    let mut c = api.client();
    let mut dialogs = vec![];
    for (w, u) in users[1..].iter().enumerate() {
        let p = u.parley.as_ref().ok_or("no REST identity")?;
        let d = api
            .create_group(
                &mut c,
                &p.token,
                &format!("loadgen rest {w}"),
                &[partner.id],
            )
            .await?;
        dialogs.push((p.token.clone(), d.id));
    }
    let progress = ctx.progress("rest");
    let deadline = Instant::now() + Duration::from_secs_f64(args.common.duration);
    let t0 = Instant::now();
    let mut tasks = vec![];
    for (w, (token, dialog)) in dialogs.into_iter().enumerate() {
        let api = api.clone();
        let schedule = schedule.clone();
        let counters = ctx.counters.clone();
        let cap = args.requests;
        tasks.push(tokio::spawn(async move {
            let mut c = api.client();
            let mut hists: BTreeMap<&'static str, Histogram> = BTreeMap::new();
            let auth = [("CB-Token", token.as_str())];
            let mut n = w;
            while Instant::now() < deadline {
                if cap.is_some_and(|cap| counters.requests.load(Relaxed) >= cap) {
                    break;
                }
                let e = schedule[n % schedule.len()];
                n += 1;
                let t = now_ns();
                let res = match e {
                    Endpoint::Post => {
                        let body = json!({"chat_dialog_id": dialog, "message": format!("lg rest {n}")});
                        c.request("POST", "/chat/Message", &auth, Some(body.to_string().as_bytes()))
                            .await
                    }
                    Endpoint::List => {
                        let path = format!(
                            "/chat/Message?chat_dialog_id={dialog}&limit=20&sort_desc=date_sent&mark_as_read=0"
                        );
                        c.request("GET", &path, &auth, None).await
                    }
                    Endpoint::Dialogs => c.request("GET", "/chat/Dialog?limit=20", &auth, None).await,
                    Endpoint::Unread => {
                        let path = format!("/chat/Message/unread?chat_dialog_ids={dialog}");
                        c.request("GET", &path, &auth, None).await
                    }
                };
                counters.requests.fetch_add(1, Relaxed);
                match res {
                    Ok(r) if r.ok() => hists.entry(e.name()).or_default().record(now_ns() - t),
                    Ok(r) => counters.error(
                        &format!("http_{}", r.status),
                        format!("{}: {}", e.name(), String::from_utf8_lossy(&r.body[..r.body.len().min(200)])),
                    ),
                    Err(err) => counters.error("http_io", format!("{}: {err}", e.name())),
                }
            }
            hists
        }));
    }
    let mut by: BTreeMap<&'static str, Histogram> = BTreeMap::new();
    for t in tasks {
        if let Ok(h) = t.await {
            for (k, v) in h {
                by.entry(k).or_default().merge(&v);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(progress);
    let mut rep = Report::new("rest", &ctx);
    rep.params.put("workers", args.workers as u64);
    rep.params.put("mix", args.mix.clone());
    rep.params.put("duration_s", args.common.duration);
    let total = ctx.counters.requests.load(Relaxed);
    rep.metrics.put("requests", total);
    rep.metrics.put("requests_per_s", total as f64 / secs);
    let mut all = Histogram::new();
    for (k, h) in &by {
        rep.metrics
            .put(&format!("{k} per_s"), h.count() as f64 / secs);
        all.merge(h);
        rep.latency_by.insert(k.to_string(), h.summary());
    }
    rep.latency_of = "request, all endpoints";
    rep.latency = Some(all.summary());
    Ok(rep.finish(&ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_becomes_a_weighted_schedule() {
        let s = parse_mix("post=2, unread=1").unwrap();
        assert_eq!(s, vec![Endpoint::Post, Endpoint::Post, Endpoint::Unread]);
        assert_eq!(parse_mix("dialogs").unwrap(), vec![Endpoint::Dialogs]);
        assert!(parse_mix("post=0").is_err());
        assert!(parse_mix("delete=1").is_err());
        assert!(parse_mix("post=x").is_err());
    }
}
