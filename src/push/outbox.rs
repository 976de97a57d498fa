//! The outbox workers: claim due rows (a lease, so rows of a worker that died come back), deliver
//! each through its provider or webhook, then delete the row, push it back with exponential
//! backoff, or move it to the dead-letter table after `push.max_attempts` failures. At least
//! once: a crash between a provider's 200 and the delete sends that push again.
//!
//! For a chat alert the worker decides, at delivery, what only the live state knows: a
//! recipient with an active connection (no CSI `<inactive/>`, no `mobile enable=true`) got the
//! message on that connection and gets no push; nor does one whose privacy rules block the
//! sender.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::apns::Apns;
use super::fcm::Fcm;
use super::http::HttpClient;
use super::payload::{cut, render, Notification, DEFAULT_TEMPLATE};
use super::provider::{Job, Outcome, Provider};
use super::webhook;
use super::webpush::WebPush;
use crate::config::PushConfig;
use crate::db::push::{self as repo, OutboxRow, Settings, Subscription};
use crate::db::DbPool;
use crate::hub::Hub;
use crate::model::{AppId, Clock, UserId, UserKey};
use crate::ops::telemetry::{
    PUSH_DEAD_LETTERS, PUSH_DELIVERIES, PUSH_DELIVERY_DURATION, PUSH_OUTBOX_DEPTH,
};
use crate::privacy::{self, PrivacyCache};

/// Sets the outbox and dead-letter depth gauges every `every` (at least a second) until
/// `shutdown`: two counts per interval instead of one per scrape, however many scrapers there
/// are. Runs whether or not this node delivers (an outbox filling up with the workers off is what
/// an operator most needs to see). A failed count keeps the last values and is logged.
pub async fn sample_depth(pool: DbPool, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = every.max(Duration::from_secs(1));
    loop {
        if *shutdown.borrow() {
            return;
        }
        match repo::depth(&pool).await {
            Ok((outbox, dead)) => {
                metrics::gauge!(PUSH_OUTBOX_DEPTH).set(outbox as f64);
                metrics::gauge!(PUSH_DEAD_LETTERS).set(dead as f64);
            }
            Err(e) => tracing::warn!(error = %e, "push outbox: counting its depth failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The delivery side: providers, the HTTP client, the live state it consults.
pub struct Workers {
    pool: DbPool,
    clock: Clock,
    config: PushConfig,
    hub: Arc<Hub>,
    domain: String,
    http: HttpClient,
    providers: Vec<Box<dyn Provider>>,
}

/// What privacy decisions read, for one batch: a fresh cache, so a list changed since the
/// previous batch is read again (the adapters' caches are theirs).
struct PrivacyEnv<'a> {
    w: &'a Workers,
    cache: PrivacyCache,
}

impl privacy::Env for PrivacyEnv<'_> {
    fn privacy_cache(&self) -> &PrivacyCache {
        &self.cache
    }
    fn pool(&self) -> &DbPool {
        &self.w.pool
    }
    fn hub(&self) -> &Hub {
        &self.w.hub
    }
    fn chat_domain(&self) -> &str {
        &self.w.domain
    }
}

fn label(kind: &str) -> &'static str {
    match kind {
        "alert" => "alert",
        "event" => "event",
        _ => "webhook",
    }
}

fn count(kind: &str, outcome: &'static str) {
    metrics::counter!(PUSH_DELIVERIES, "kind" => label(kind), "outcome" => outcome).increment(1);
}

impl Workers {
    pub fn new(
        pool: DbPool,
        clock: Clock,
        config: PushConfig,
        hub: Arc<Hub>,
        domain: &str,
    ) -> Self {
        let http = HttpClient::new(
            &config.ca_file,
            Duration::from_secs(config.request_timeout_secs.max(1)),
            config.max_idle_per_host,
        );
        let providers: Vec<Box<dyn Provider>> = vec![
            Box::new(Fcm::new(
                http.clone(),
                config.fcm_url.clone(),
                config.fcm_token_url.clone(),
            )),
            Box::new(Apns::new(http.clone(), config.apns_url.clone())),
            Box::new(WebPush::new(http.clone(), format!("mailto:push@{domain}"))),
        ];
        Self {
            pool,
            clock,
            config,
            hub,
            domain: domain.to_owned(),
            http,
            providers,
        }
    }

    /// Polls the outbox until `shutdown`, delivering `push.concurrency` rows at a time.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let claimed = self.claim().await;
            let wait = match claimed {
                Ok(rows) if rows.is_empty() => {
                    failures = 0;
                    idle
                }
                Ok(rows) => {
                    failures = 0;
                    self.deliver_all(rows).await;
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "push outbox: claiming failed");
                    idle * failures.min(20)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn claim(&self) -> Result<Vec<OutboxRow>, crate::db::DbError> {
        let now = self.clock.now();
        let lease = now + Duration::from_secs(self.config.lease_secs.max(1));
        repo::claim(&self.pool, now, lease, self.config.batch.max(1)).await
    }

    async fn deliver_all(&self, rows: Vec<OutboxRow>) {
        let env = PrivacyEnv {
            w: self,
            cache: PrivacyCache::new(),
        };
        let mut settings: HashMap<AppId, Arc<Settings>> = HashMap::new();
        for r in &rows {
            if let std::collections::hash_map::Entry::Vacant(v) = settings.entry(r.app) {
                match repo::settings(&self.pool, r.app).await {
                    Ok(s) => {
                        v.insert(Arc::new(s));
                    }
                    // Left out: its rows are retried after their lease.
                    Err(e) => tracing::warn!(error = %e, "push outbox: reading settings failed"),
                }
            }
        }
        let (env, settings) = (&env, &settings);
        futures_util::stream::iter(rows)
            .map(|row| async move {
                let Some(s) = settings.get(&row.app) else {
                    return;
                };
                let started = Instant::now();
                let outcome = self.deliver(env, &row, s).await;
                metrics::histogram!(PUSH_DELIVERY_DURATION, "kind" => label(&row.kind))
                    .record(started.elapsed());
                if let Err(e) = self.settle(&row, outcome).await {
                    // The lease brings the row back: delivered again, at least once.
                    tracing::warn!(error = %e, id = row.id, "push outbox: recording an outcome failed");
                }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// One row's delivery; `None` when there was nothing (left) to deliver.
    async fn deliver(
        &self,
        env: &PrivacyEnv<'_>,
        row: &OutboxRow,
        settings: &Settings,
    ) -> Option<(Outcome, Option<Subscription>)> {
        if row.kind == "webhook" {
            let (Some(url), Some(secret)) = (&settings.webhook_url, &settings.webhook_secret)
            else {
                return None;
            };
            let event = row
                .payload
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = row.payload.to_string();
            let o = webhook::call(&self.http, url, secret, event, row.id, body.as_bytes()).await;
            return Some((o, None));
        }
        let sub = match row.subscription {
            Some(id) => match repo::subscription_by_id(&self.pool, id).await {
                Ok(Some(s)) => s,
                Ok(None) => return None,
                Err(e) => return Some((Outcome::Retry(e.to_string()), None)),
            },
            None => return None,
        };
        let note = if row.kind == "alert" {
            match self.alert(env, row, &sub, settings).await {
                Ok(Some(n)) => n,
                Ok(None) => return None,
                Err(o) => return Some((o, None)),
            }
        } else {
            let message = row
                .payload
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Notification::from_event_message(message)
        };
        let provider = self
            .providers
            .iter()
            .find(|p| p.channels().contains(&sub.channel.as_str()))?;
        let job = Job {
            sub: &sub,
            settings,
            note: &note,
            now: self.clock.unix_seconds(),
        };
        let o = provider.deliver(&job).await;
        Some((o, Some(sub)))
    }

    /// A chat alert's push, or `None` when the recipient must not get one now.
    async fn alert(
        &self,
        env: &PrivacyEnv<'_>,
        row: &OutboxRow,
        sub: &Subscription,
        settings: &Settings,
    ) -> Result<Option<Notification>, Outcome> {
        let p = &row.payload;
        let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
        let recipient = UserKey {
            app: row.app,
            user: sub.user,
        };
        if self.hub.connections(recipient).iter().any(|c| c.active) {
            return Ok(None);
        }
        let sender = p.get("sender_id").and_then(Value::as_i64).unwrap_or(0);
        let sender = UserKey {
            app: row.app,
            user: UserId(sender),
        };
        if privacy::decision(env, sender, recipient, privacy::Kind::Message).await
            != privacy::Decision::Allow
        {
            return Ok(None);
        }
        let badge = repo::total_unread(&self.pool, sub.user.0)
            .await
            .map_err(|e| Outcome::Retry(e.to_string()))?;
        let sender_id = sender.user.0.to_string();
        let template = settings
            .alert_template
            .as_deref()
            .unwrap_or(DEFAULT_TEMPLATE);
        let text = render(
            template,
            &[
                ("sender_name", field("sender_name")),
                ("text", field("text")),
                ("dialog_name", field("dialog_name")),
                ("dialog_id", field("dialog_id")),
                ("message_id", field("message_id")),
                ("sender_id", &sender_id),
            ],
        );
        let mut n = Notification::from_object(&Default::default());
        n.message = Some(cut(&text, self.config.max_message_bytes).to_owned());
        n.badge = Some(badge);
        n.thread_id = Some(field("dialog_id").to_owned());
        for k in ["dialog_id", "message_id"] {
            n.custom.insert(k.into(), json!(field(k)));
        }
        n.custom.insert("user_id".into(), json!(sender.user.0));
        Ok(Some(n))
    }

    /// Records one row's outcome.
    async fn settle(
        &self,
        row: &OutboxRow,
        outcome: Option<(Outcome, Option<Subscription>)>,
    ) -> Result<(), crate::db::DbError> {
        let now = self.clock.now();
        let Some((outcome, sub)) = outcome else {
            count(&row.kind, "skipped");
            return repo::finish(&self.pool, row.id).await;
        };
        match outcome {
            Outcome::Delivered => {
                count(&row.kind, "delivered");
                repo::finish(&self.pool, row.id).await
            }
            Outcome::DeadToken(why) => {
                count(&row.kind, "dead_token");
                if let Some(s) = sub {
                    let token = s.token.or(s.web_endpoint).unwrap_or_default();
                    if repo::delete_dead_subscription(&self.pool, s.id, &token).await? {
                        tracing::info!(subscription = s.id, %why, "push subscription removed: the provider says the device is gone");
                    }
                }
                repo::finish(&self.pool, row.id).await
            }
            Outcome::Retry(why) if row.attempts + 1 < self.config.max_attempts => {
                count(&row.kind, "retried");
                let wait = backoff(
                    row.attempts,
                    self.config.retry_base_secs,
                    self.config.retry_max_secs,
                );
                tracing::debug!(id = row.id, attempts = row.attempts + 1, %why, "push delivery will be retried");
                repo::retry_later(&self.pool, row.id, now + wait, cut(&why, 500)).await
            }
            Outcome::Retry(why) | Outcome::Failed(why) => {
                count(&row.kind, "dead_letter");
                tracing::warn!(id = row.id, kind = %row.kind, %why, "push delivery dead-lettered");
                repo::dead_letter(&self.pool, row.id, cut(&why, 500), now).await
            }
        }
    }
}

/// The wait after `attempts` failures: `base` doubled each time, at most `max`.
fn backoff(attempts: i32, base: u64, max: u64) -> Duration {
    let shift = attempts.clamp(0, 30) as u32;
    Duration::from_secs(base.max(1).saturating_mul(1u64 << shift).min(max.max(1)))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        assert_eq!(backoff(0, 2, 600), Duration::from_secs(2));
        assert_eq!(backoff(3, 2, 600), Duration::from_secs(16));
        assert_eq!(backoff(40, 2, 600), Duration::from_secs(600));
    }
}
