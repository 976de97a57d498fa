//! What every scenario shares: the common command-line options, the run context (target,
//! source addresses, counters, the monotonic clock carried in messages), account lists (from a
//! template, a file, or provisioned through Parley's REST), concurrent logins, the once-a-second
//! progress line, and the report (table or JSON) with its verdict.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::hist::{Histogram, Summary};
use crate::net::{self, SourceAddrs};
use crate::parley::{Api, ParleyUser};
use crate::xmpp::{self, Account, Endpoint, Session, Transport, XmppError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XmppAuth {
    /// The user's REST session token as the XMPP password.
    Token,
    /// The user's password.
    Password,
}

/// Options every scenario takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Server host; only loopback unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// XMPP port (the WebSocket port with --transport ws).
    #[arg(long, default_value_t = 5222)]
    pub port: u16,
    /// XMPP domain (stream `to`, JIDs).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// WebSocket path.
    #[arg(long, default_value = "/")]
    pub ws_path: String,
    /// Login template; `{i}` is the user number (from --first-user).
    #[arg(long, default_value = "user{i}")]
    pub user: String,
    /// Password of every templated user.
    #[arg(long, default_value = "loadgen-pass")]
    pub password: String,
    /// File of `login password` lines (login = local part or bare JID) instead of the template.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// First user number for the template (split users between processes with it).
    #[arg(long, default_value_t = 1)]
    pub first_user: usize,
    /// MUC service domain (default `muc.<domain>`).
    #[arg(long)]
    pub muc_domain: Option<String>,
    /// Allow a target that is not loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Measured phase in seconds (sending, or holding connections).
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 10.0)]
    pub duration: f64,
    /// Time allowed for provisioning, logins and joins, in seconds.
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 300.0)]
    pub setup_timeout: f64,
    /// Per-login timeout, in seconds.
    #[arg(long, value_parser = crate::common::parse_secs, default_value_t = 15.0)]
    pub login_timeout: f64,
    /// Logins (and REST provisioning calls ×1/8) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// First source address 127.0.0.N used when connections are spread.
    #[arg(long, default_value_t = 1)]
    pub src_first: u8,
    /// Number of 127.0.0.x source addresses (default: as many as the port range needs).
    #[arg(long)]
    pub src_count: Option<usize>,
    /// Name of the server in the report (e.g. ejabberd).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Tokio worker threads (default: the CPUs this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Provision users and dialogs through Parley's REST API and log in as `{id}-{app}`.
    #[arg(long)]
    pub parley: bool,
    /// Parley's REST base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    #[arg(long)]
    pub app_id: Option<u64>,
    #[arg(long)]
    pub auth_key: Option<String>,
    /// What Parley users present as their XMPP password.
    #[arg(long, value_enum, default_value_t = XmppAuth::Token)]
    pub xmpp_auth: XmppAuth,
    /// File of provisioned Parley users (`login id token` lines): users found there are not
    /// provisioned again (each costs Parley a password hash); new ones are appended.
    /// Tokens expire 2 h after their last use.
    #[arg(long)]
    pub parley_cache: Option<PathBuf>,
}

/// A number of seconds: finite, not negative, at most a day (every run is bounded).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s}: seconds must be between 0 and 86400"));
    }
    Ok(v)
}

/// A message rate: finite and above zero.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a rate"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!(
            "{s}: the rate must be above 0 and at most 1e9 msgs/s"
        ));
    }
    Ok(v)
}

/// Nanoseconds on the process's monotonic clock (what messages carry).
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Live counters, shared by every task and read by the progress line.
#[derive(Default)]
pub struct Counters {
    pub logins: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    error_total: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Counters {
    pub fn error(&self, category: &str, detail: impl std::fmt::Display) {
        self.error_total.fetch_add(1, Relaxed);
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(category.to_string()).or_default() += 1;
        }
        if let Ok(mut s) = self.samples.lock() {
            if s.len() < 5 {
                s.push(format!("{category}: {detail}"));
            }
        }
    }

    pub fn xmpp_error(&self, e: &XmppError) {
        self.error(e.category(), e);
    }

    pub fn error_total(&self) -> u64 {
        self.error_total.load(Relaxed)
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn samples(&self) -> Vec<String> {
        self.samples.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// One user as a scenario sees it.
#[derive(Clone, Debug)]
pub struct User {
    pub acct: Account,
    /// MUC nickname (Parley: the numeric user id, as the SDK does).
    pub nick: String,
    pub parley: Option<ParleyUser>,
}

/// Everything a scenario runs with.
pub struct Ctx {
    pub common: Common,
    pub ep: Endpoint,
    pub src: SourceAddrs,
    pub counters: Arc<Counters>,
    pub api: Option<Api>,
    pub muc_domain: String,
    pub setup_deadline: Instant,
}

impl Ctx {
    /// Validate the target (loopback rule) and prepare the endpoint; `conns` sizes the
    /// source-address plan.
    pub fn new(common: &Common, conns: usize) -> Result<Ctx, String> {
        let addr = net::resolve_target(&common.host, common.port, common.allow_remote)?;
        let api = if common.parley {
            let (h, p) = crate::http::parse_base(&common.api)?;
            let api_addr = net::resolve_target(&h, p, common.allow_remote)?;
            Some(Api {
                addr: api_addr,
                host: format!("{h}:{p}"),
                app_id: common.app_id.ok_or("--parley needs --app-id")?,
                auth_key: common.auth_key.clone().ok_or("--parley needs --auth-key")?,
            })
        } else {
            None
        };
        let src = SourceAddrs::plan(
            addr.ip(),
            conns,
            net::ephemeral_ports(),
            common.src_first,
            common.src_count,
        );
        Ok(Ctx {
            ep: Endpoint {
                addr,
                domain: common.domain.clone(),
                transport: common.transport,
                ws_path: common.ws_path.clone(),
                tls: xmpp::tls_config(),
            },
            src,
            counters: Arc::new(Counters::default()),
            api,
            muc_domain: common
                .muc_domain
                .clone()
                .unwrap_or_else(|| format!("muc.{}", common.domain)),
            common: common.clone(),
            setup_deadline: Instant::now() + Duration::from_secs_f64(common.setup_timeout),
        })
    }

    pub fn target(&self) -> String {
        self.ep.addr.to_string()
    }

    /// `n` users: templated, from the users file, or provisioned in Parley.
    pub async fn users(&self, n: usize) -> Result<Vec<User>, String> {
        if let Some(api) = &self.api {
            return self.provision(api, n).await;
        }
        let domain = &self.common.domain;
        let pairs: Vec<(String, String)> = match &self.common.users_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                text.lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .filter_map(|l| {
                        let mut it = l.split_whitespace();
                        Some((it.next()?.to_string(), it.next()?.to_string()))
                    })
                    .take(n)
                    .collect()
            }
            None => (0..n)
                .map(|k| {
                    let i = (self.common.first_user + k).to_string();
                    (
                        self.common.user.replace("{i}", &i),
                        self.common.password.clone(),
                    )
                })
                .collect(),
        };
        if pairs.len() < n {
            return Err(format!(
                "{n} users needed, the users file has {}",
                pairs.len()
            ));
        }
        Ok(pairs
            .into_iter()
            .enumerate()
            .map(|(k, (login, password))| {
                let local = login.split('@').next().unwrap_or(&login).to_string();
                User {
                    acct: Account {
                        jid: format!("{local}@{domain}"),
                        authcid: local,
                        password,
                    },
                    nick: format!("u{}", self.common.first_user + k),
                    parley: None,
                }
            })
            .collect())
    }

    async fn provision(&self, api: &Api, n: usize) -> Result<Vec<User>, String> {
        let mut c = api.client();
        let app_token = api.app_session(&mut c).await?;
        let started = Instant::now();
        let conc = (self.common.concurrency / 8).max(1);
        let cache: BTreeMap<String, (u64, String)> = match &self.common.parley_cache {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let login = it.next()?.to_string();
                    let id = it.next()?.parse().ok()?;
                    Some((login, (id, it.next()?.to_string())))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        let logins: Vec<String> = (0..n)
            .map(|k| {
                let i = (self.common.first_user + k).to_string();
                self.common.user.replace("{i}", &i)
            })
            .collect();
        let results: Vec<Result<(ParleyUser, bool), String>> =
            futures_util::stream::iter(logins.iter())
                .map(|login| {
                    let app_token = app_token.clone();
                    let api = api.clone();
                    let password = self.common.password.clone();
                    let cached = cache.get(login).cloned();
                    async move {
                        let mut c = api.client();
                        if let Some((id, token)) = cached {
                            if api.session_live(&mut c, &token).await {
                                return Ok((
                                    ParleyUser {
                                        id,
                                        password,
                                        token,
                                    },
                                    false,
                                ));
                            }
                        }
                        let p = api
                            .provision_user(&mut c, &app_token, login, &password)
                            .await?;
                        Ok((p, true))
                    }
                })
                .buffered(conc)
                .collect()
                .await;
        let mut users = Vec::with_capacity(n);
        let mut fresh = String::new();
        for (login, r) in logins.iter().zip(results) {
            let (p, new) = r?;
            if new {
                fresh.push_str(&format!("{login} {} {}\n", p.id, p.token));
            }
            let local = format!("{}-{}", p.id, api.app_id);
            let password = match self.common.xmpp_auth {
                XmppAuth::Token => p.token.clone(),
                XmppAuth::Password => p.password.clone(),
            };
            users.push(User {
                acct: Account {
                    jid: format!("{local}@{}", self.common.domain),
                    authcid: local,
                    password,
                },
                nick: p.id.to_string(),
                parley: Some(p),
            });
        }
        if let (Some(path), false) = (&self.common.parley_cache, fresh.is_empty()) {
            use std::io::Write as _;
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(fresh.as_bytes()));
            if let Err(e) = appended {
                eprintln!("loadgen: cannot append to {}: {e}", path.display());
            }
        }
        if !self.common.quiet {
            eprintln!(
                "{n} Parley users ready ({} provisioned) in {:.1}s",
                fresh.lines().count(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(users)
    }

    /// Log `users` in, `concurrency` at a time; failures are counted and give `None`.
    /// Returns the sessions (in order), the login latencies and the login phase's length.
    pub async fn login_all(
        &self,
        users: &[User],
        presence: bool,
    ) -> (Vec<Option<Session>>, Histogram, Duration) {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(self.common.login_timeout);
        let deadline = self.setup_deadline;
        let results: Vec<(Option<Session>, u64)> =
            futures_util::stream::iter(users.iter().enumerate())
                .map(|(i, u)| {
                    let ep = &self.ep;
                    let src = self.src.for_conn(i);
                    let counters = &self.counters;
                    async move {
                        if Instant::now() >= deadline {
                            counters.error("timeout", "setup deadline passed before login");
                            return (None, 0);
                        }
                        let t0 = now_ns();
                        match tokio::time::timeout(timeout, xmpp::login(ep, &u.acct, src, presence))
                            .await
                        {
                            Ok(Ok(s)) => {
                                counters.logins.fetch_add(1, Relaxed);
                                (Some(s), now_ns() - t0)
                            }
                            Ok(Err(e)) => {
                                counters.xmpp_error(&e);
                                (None, 0)
                            }
                            Err(_) => {
                                counters.xmpp_error(&XmppError::Timeout);
                                (None, 0)
                            }
                        }
                    }
                })
                .buffered(self.common.concurrency.max(1))
                .collect()
                .await;
        let mut hist = Histogram::new();
        let mut sessions = Vec::with_capacity(results.len());
        for (s, ns) in results {
            if s.is_some() {
                hist.record(ns);
            }
            sessions.push(s);
        }
        (sessions, hist, started.elapsed())
    }

    /// Print a progress line on stderr every second until the returned guard is dropped.
    pub fn progress(&self, what: &'static str) -> ProgressGuard {
        let stop = Arc::new(AtomicBool::new(false));
        if !self.common.quiet {
            let c = self.counters.clone();
            let stop2 = stop.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut last = (0u64, 0u64, 0u64);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if stop2.load(Relaxed) {
                        break;
                    }
                    let now = (
                        c.sent.load(Relaxed),
                        c.received.load(Relaxed),
                        c.requests.load(Relaxed),
                    );
                    eprintln!(
                        "[{:>4.0}s {what}] logins {} | sent {} (+{}/s) | recv {} (+{}/s) | req {} (+{}/s) | errors {}",
                        t0.elapsed().as_secs_f64(),
                        c.logins.load(Relaxed),
                        now.0,
                        now.0 - last.0,
                        now.1,
                        now.1 - last.1,
                        now.2,
                        now.2 - last.2,
                        c.error_total()
                    );
                    last = now;
                }
            });
        }
        ProgressGuard(stop)
    }
}

pub struct ProgressGuard(Arc<AtomicBool>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// Ordered name → value pairs (printed in this order, serialized as a JSON object).
#[derive(Default, Debug)]
pub struct Metrics(pub Vec<(String, Value)>);

impl Metrics {
    pub fn put(&mut self, k: &str, v: impl Into<Value>) {
        self.0.push((k.to_string(), v.into()));
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A scenario's result.
#[derive(Serialize, Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub label: String,
    pub target: String,
    pub transport: Transport,
    pub params: Metrics,
    pub metrics: Metrics,
    /// What `latency` measures: end-to-end message, login, or request.
    pub latency_of: &'static str,
    /// Latency over the whole run.
    pub latency: Option<Summary>,
    /// Per-endpoint latency (REST).
    pub latency_by: BTreeMap<String, Summary>,
    pub errors: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    /// Messages (or deliveries) sent but never received.
    pub lost: u64,
    pub ok: bool,
    pub verdict: String,
}

impl Report {
    pub fn new(scenario: &'static str, ctx: &Ctx) -> Report {
        Report {
            scenario,
            label: ctx.common.label.clone(),
            target: ctx.target(),
            transport: ctx.common.transport,
            params: Metrics::default(),
            metrics: Metrics::default(),
            latency_of: "end-to-end message",
            latency: None,
            latency_by: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_samples: vec![],
            lost: 0,
            ok: true,
            verdict: String::new(),
        }
    }

    /// Fill errors and the verdict from the counters; `lost` must be set first.
    pub fn finish(self, ctx: &Ctx) -> Report {
        self.finish_with(&ctx.counters)
    }

    fn finish_with(mut self, counters: &Counters) -> Report {
        self.errors = counters.errors();
        self.error_samples = counters.samples();
        let errs: u64 = self.errors.values().sum();
        self.ok = self.lost == 0 && errs == 0;
        self.verdict = match (self.lost, errs) {
            (0, 0) => "OK: no errors, nothing lost".into(),
            (0, e) => format!("FAILED: {e} errors"),
            (l, 0) => format!("LOST {l} messages (sent but never received)"),
            (l, e) => format!("LOST {l} messages (sent but never received) and {e} errors"),
        };
        self
    }

    /// The human-readable report.
    pub fn render_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.label)
        };
        let _ = writeln!(
            out,
            "\n== {} against {}{} over {:?} ==",
            self.scenario, self.target, label, self.transport
        );
        let show = |v: &Value| match v {
            Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        for (k, v) in self.params.0.iter().chain(self.metrics.0.iter()) {
            let _ = writeln!(out, "  {k:<28} {}", show(v));
        }
        let lat = |s: &Summary| {
            format!(
                "p50 {:.2} ms | p90 {:.2} | p99 {:.2} | max {:.2} (n={})",
                s.p50_us / 1000.0,
                s.p90_us / 1000.0,
                s.p99_us / 1000.0,
                s.max_us / 1000.0,
                s.count
            )
        };
        if let Some(s) = &self.latency {
            let _ = writeln!(
                out,
                "  {:<28} {}",
                format!("latency ({})", self.latency_of),
                lat(s)
            );
        }
        for (k, s) in &self.latency_by {
            let _ = writeln!(out, "  {:<28} {}", format!("latency {k}"), lat(s));
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "  {:<28} none", "errors");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "  {:<28} {}", "errors", list.join(", "));
            for s in &self.error_samples {
                let _ = writeln!(out, "    e.g. {s}");
            }
        }
        let _ = writeln!(out, "  {:<28} {}", "lost", self.lost);
        let _ = writeln!(out, "RESULT: {}", self.verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_serialize_as_an_object_in_order() {
        let mut m = Metrics::default();
        m.put("b", 1);
        m.put("a", "x");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"b":1,"a":"x"}"#);
    }

    #[test]
    fn counters_keep_categories_and_a_few_samples() {
        let c = Counters::default();
        for i in 0..7 {
            c.error("auth", i);
        }
        c.xmpp_error(&XmppError::Timeout);
        assert_eq!(c.error_total(), 8);
        assert_eq!(c.errors().get("auth"), Some(&7));
        assert_eq!(c.errors().get("timeout"), Some(&1));
        assert_eq!(c.samples().len(), 5);
    }

    fn bare_report() -> Report {
        Report {
            scenario: "pairs",
            label: String::new(),
            target: "127.0.0.1:5222".into(),
            transport: Transport::Tcp,
            params: Metrics::default(),
            metrics: Metrics::default(),
            latency_of: "end-to-end message",
            latency: None,
            latency_by: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_samples: vec![],
            lost: 0,
            ok: true,
            verdict: String::new(),
        }
    }

    #[test]
    fn a_run_with_lost_messages_is_not_ok_and_says_so() {
        let c = Counters::default();
        let clean = bare_report().finish_with(&c);
        assert!(clean.ok);
        let mut r = bare_report();
        r.lost = 3;
        let r = r.finish_with(&c);
        assert!(!r.ok);
        assert!(r.verdict.starts_with("LOST 3 messages"), "{}", r.verdict);
        c.error("auth", "not-authorized");
        let r = bare_report().finish_with(&c);
        assert!(!r.ok);
        assert_eq!(r.errors.get("auth"), Some(&1));
    }

    #[test]
    fn durations_and_rates_are_bounded() {
        assert_eq!(parse_secs("2.5"), Ok(2.5));
        assert_eq!(parse_secs("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "1e12", "x"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("4000"), Ok(4000.0));
        for bad in ["0", "-5", "NaN", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
