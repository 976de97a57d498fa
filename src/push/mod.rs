//! Push notifications and webhooks: the push API's rules (`POST/GET/DELETE /subscriptions`,
//! `POST/GET/DELETE /events`), the application settings the operator sets (provider
//! credentials, chat-alert template, webhook), and the outbox workers that deliver through
//! the providers (`fcm`, `apns`, `webpush`, behind `provider::Provider`) and webhooks.
//!
//! Where each decision is made:
//! - a chat alert is *enqueued* in the message's own transaction (`chat` calls
//!   `db::push::enqueue_alerts` from the history writer) for every recipient with notifications
//!   on for the dialog and a subscribed device, unless the message is `silent=1` or its
//!   application has no provider credentials (known per application for
//!   `push.credentials_cache_secs`);
//! - whether the recipient is online and active (CSI / `mobile#v2`, kept in the hub) and whether
//!   privacy blocks the sender are decided at *delivery*, by the worker, because only the live
//!   state at that moment says whether the recipient's own connection got the message.
//!
//! Must not: run SQL (that is `db::push`), or know an adapter.

pub mod apns;
pub mod fcm;
pub mod http;
mod outbox;
pub mod payload;
pub mod provider;
pub mod webhook;
pub mod webpush;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::chat::ChatError;
use crate::config::PushConfig;
use crate::db::push::{self as repo, Event, Selector, Settings, Subscription};
use crate::db::DbPool;
use crate::identity::Caller;
use crate::model::{AppId, Clock};

pub use outbox::{sample_depth, Workers};

/// The push service: cheap to clone.
#[derive(Clone)]
pub struct Push {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    clock: Clock,
    config: PushConfig,
}

/// `POST /subscriptions`, typed.
#[derive(Clone, Debug, Default)]
pub struct NewSubscription {
    pub channel: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub udid: Option<String>,
    pub bundle_identifier: Option<String>,
    pub token: Option<String>,
    pub web_endpoint: Option<String>,
    pub web_auth: Option<String>,
    pub web_p256dh: Option<String>,
}

/// `POST /events`, typed.
#[derive(Clone, Debug, Default)]
pub struct NewEvent {
    pub notification_type: Option<String>,
    pub push_type: Option<String>,
    pub environment: Option<String>,
    pub event_type: Option<String>,
    pub message: Option<String>,
    pub name: Option<String>,
    pub user_ids: Option<Vec<String>>,
    pub external_ids: Option<Vec<String>>,
    pub tags_any: Option<Vec<String>>,
    pub tags_all: Option<Vec<String>>,
    pub tags_exclude: Option<Vec<String>>,
}

pub const CHANNELS: [&str; 4] = ["apns", "apns_voip", "gcm", "web"];
const ENVIRONMENTS: [&str; 2] = ["development", "production"];
/// Longest device token, udid, bundle id or Web Push key accepted.
const MAX_FIELD: usize = 512;
/// Longest Web Push endpoint URL accepted.
const MAX_URL: usize = 2048;

fn invalid(field: &str, message: &str) -> ChatError {
    ChatError::invalid(field, message)
}

/// A required, bounded, non-empty text field.
fn required(v: &Option<String>, field: &str, max: usize) -> Result<String, ChatError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Err(invalid(field, "is required")),
        Some(s) if s.len() > max => Err(invalid(field, &format!("is longer than {max} bytes"))),
        Some(s) if s.chars().any(char::is_control) => {
            Err(invalid(field, "holds control characters"))
        }
        Some(s) => Ok(s.to_owned()),
    }
}

fn optional(v: &Option<String>, field: &str, max: usize) -> Result<Option<String>, ChatError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(_) => required(v, field, max).map(Some),
    }
}

fn one_of(v: &str, field: &str, allowed: &[&str]) -> Result<(), ChatError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            field,
            &format!("must be one of: {}", allowed.join(", ")),
        ))
    }
}

impl Push {
    pub fn new(pool: DbPool, clock: Clock, config: PushConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                clock,
                config,
            }),
        }
    }

    fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    /// `POST /subscriptions`: subscribes the caller's device (the same device and channel again
    /// replaces the token). Web subscriptions need the endpoint (http or https) and both keys;
    /// the others a device token.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        new: NewSubscription,
    ) -> Result<Subscription, ChatError> {
        let user = caller.user()?.id;
        let channel = required(&new.channel, "notification_channel", 16)?;
        one_of(&channel, "notification_channel", &CHANNELS)?;
        let environment = required(&new.environment, "push_token[environment]", 16)?;
        one_of(&environment, "push_token[environment]", &ENVIRONMENTS)?;
        let platform = required(&new.platform, "device[platform]", 16)?;
        one_of(&platform, "device[platform]", &["ios", "android", "web"])?;
        let udid = required(&new.udid, "device[udid]", MAX_FIELD)?;
        let bundle = optional(&new.bundle_identifier, "push_token[bundle_identifier]", 255)?;
        let mut sub = Subscription {
            id: 0,
            app: caller.app.id,
            user,
            channel: channel.clone(),
            environment,
            platform,
            udid,
            bundle_identifier: bundle,
            token: None,
            web_endpoint: None,
            web_auth: None,
            web_p256dh: None,
        };
        if channel == "web" {
            let endpoint = required(&new.web_endpoint, "push_token[web_endpoint]", MAX_URL)?;
            let ok_url = endpoint.parse::<hyper::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some()
            });
            if !ok_url {
                return Err(invalid("push_token[web_endpoint]", "must be an https URL"));
            }
            sub.web_endpoint = Some(endpoint);
            sub.web_auth = Some(required(&new.web_auth, "push_token[web_auth]", MAX_FIELD)?);
            sub.web_p256dh = Some(required(
                &new.web_p256dh,
                "push_token[web_p256dh]",
                MAX_FIELD,
            )?);
        } else {
            sub.token = Some(required(
                &new.token,
                "push_token[client_identification_sequence]",
                MAX_FIELD,
            )?);
        }
        let max = self.inner.config.max_subscriptions_per_user;
        repo::upsert_subscription(self.pool(), &sub, max, self.inner.clock.now())
            .await?
            .ok_or_else(|| {
                invalid(
                    "device[udid]",
                    &format!("is one device too many: at most {max} subscriptions per user"),
                )
            })
    }

    /// `GET /subscriptions`: the caller's subscriptions.
    pub async fn subscriptions(&self, caller: &Caller) -> Result<Vec<Subscription>, ChatError> {
        let user = caller.user()?.id;
        Ok(repo::subscriptions_of(self.pool(), caller.app.id, user).await?)
    }

    /// `DELETE /subscriptions/{id}`: one of the caller's own; any other id is "not found".
    pub async fn unsubscribe(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        let user = caller.user()?.id;
        let gone = match id.parse::<i64>() {
            Ok(n) => repo::delete_subscription(self.pool(), caller.app.id, user, n).await?,
            Err(_) => false,
        };
        if gone {
            Ok(())
        } else {
            Err(ChatError::NotFound(format!(
                "Subscription {} not found",
                payload::cut(id, 64)
            )))
        }
    }

    /// `POST /events`: stores the event and enqueues one push per matching device of the users
    /// its one recipient selector picks (at most `push.max_event_recipients`).
    pub async fn create_event(&self, caller: &Caller, new: NewEvent) -> Result<Event, ChatError> {
        let app = caller.app.id;
        let cfg = &self.inner.config;
        let kind = new.notification_type.as_deref().unwrap_or("push");
        one_of(kind, "event[notification_type]", &["push"])?;
        let push_type = optional(&new.push_type, "event[push_type]", 16)?;
        if let Some(p) = &push_type {
            one_of(p, "event[push_type]", &CHANNELS)?;
        }
        let environment = required(&new.environment, "event[environment]", 16)?;
        one_of(&environment, "event[environment]", &ENVIRONMENTS)?;
        let event_type = new.event_type.as_deref().unwrap_or("one_shot");
        one_of(event_type, "event[event_type]", &["one_shot"])?;
        let message = required(&new.message, "event[message]", cfg.max_message_bytes)?;
        let name = optional(&new.name, "event[name]", 255)?;
        let ids = |v: &[String], field: &str| -> Result<Vec<i64>, ChatError> {
            if v.len() as i64 > cfg.max_event_recipients {
                return Err(invalid(field, "lists too many users"));
            }
            v.iter()
                .map(|s| s.trim().parse::<i64>())
                .collect::<Result<_, _>>()
                .map_err(|_| invalid(field, "must be a comma-separated list of ids"))
        };
        let tags = |v: &Option<Vec<String>>, field: &str| -> Result<Vec<String>, ChatError> {
            let v = v.clone().unwrap_or_default();
            if v.len() > 100 || v.iter().any(|t| t.len() > 255) {
                return Err(invalid(field, "lists too many or too long tags"));
            }
            Ok(v.into_iter().map(|t| t.trim().to_owned()).collect())
        };
        let has_tags = new.tags_any.is_some() || new.tags_all.is_some();
        let selectors = [new.user_ids.is_some(), new.external_ids.is_some(), has_tags]
            .iter()
            .filter(|b| **b)
            .count();
        if selectors != 1 {
            return Err(invalid(
                "event[user]",
                "give exactly one of user[ids], external_user[ids], user[tags][any|all]",
            ));
        }
        let (selector, tag_query) = if let Some(v) = &new.user_ids {
            (Selector::Ids(ids(v, "event[user][ids]")?), None)
        } else if let Some(v) = &new.external_ids {
            (
                Selector::ExternalIds(ids(v, "event[external_user][ids]")?),
                None,
            )
        } else {
            let any = tags(&new.tags_any, "event[user][tags][any]")?;
            let all = tags(&new.tags_all, "event[user][tags][all]")?;
            let exclude = tags(&new.tags_exclude, "event[user][tags][exclude]")?;
            let q = json!({ "any": any, "all": all, "exclude": exclude }).to_string();
            (Selector::Tags { any, all, exclude }, Some(q))
        };
        let users =
            repo::select_users(self.pool(), app, &selector, cfg.max_event_recipients).await?;
        if users.len() as i64 > cfg.max_event_recipients {
            return Err(invalid(
                "event[user]",
                &format!(
                    "reaches more than {} users (push.max_event_recipients)",
                    cfg.max_event_recipients
                ),
            ));
        }
        let e = Event {
            id: 0,
            app,
            user: caller.user.as_ref().map(|u| u.id.0),
            event_type: event_type.to_owned(),
            push_type,
            environment,
            message,
            name,
            tag_query,
            recipients: users.len() as i32,
            created_at: self.inner.clock.now(),
            updated_at: self.inner.clock.now(),
        };
        let payload = json!({ "message": e.message });
        Ok(repo::insert_event(self.pool(), &e, &users, &payload, self.inner.clock.now()).await?)
    }

    /// `GET /events/{id}`: an event of the caller's application.
    pub async fn event(&self, caller: &Caller, id: &str) -> Result<Event, ChatError> {
        let found = match id.parse::<i64>() {
            Ok(n) => repo::get_event(self.pool(), caller.app.id, n).await?,
            Err(_) => None,
        };
        found
            .ok_or_else(|| ChatError::NotFound(format!("Event {} not found", payload::cut(id, 64))))
    }

    /// `DELETE /events/{id}`: the event and its pushes not yet sent.
    pub async fn delete_event(&self, caller: &Caller, id: &str) -> Result<(), ChatError> {
        let gone = match id.parse::<i64>() {
            Ok(n) => repo::delete_event(self.pool(), caller.app.id, n).await?,
            Err(_) => false,
        };
        if gone {
            Ok(())
        } else {
            Err(ChatError::NotFound(format!(
                "Event {} not found",
                payload::cut(id, 64)
            )))
        }
    }
}

/// A subscription as the API shows it (§5.1).
pub fn subscription_json(s: &Subscription) -> Value {
    json!({ "subscription": {
        "id": s.id,
        "notification_channel": { "name": s.channel },
        "device": { "udid": s.udid, "platform": { "name": s.platform } },
    }})
}

/// An event as the API shows it (§5.2).
pub fn event_json(e: &Event) -> Value {
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    json!({ "event": {
        "id": e.id,
        "event_type": e.event_type,
        "message": e.message,
        "date": Value::Null,
        "period": Value::Null,
        "name": e.name,
        "occured_count": 0,
        "created_at": fmt(e.created_at),
        "updated_at": fmt(e.updated_at),
        "end_date": Value::Null,
        "active": true,
        "application_id": e.app.0,
        "user_id": e.user,
        "kind": "API",
        "environment": e.environment,
        "tag_query": e.tag_query,
        "notification_channel": { "name": e.push_type.clone().unwrap_or_else(|| "universal".into()) },
    }})
}

/// The operator's changes to an application's push settings (`parley app set-push`,
/// `set-alert-template`, `set-webhook`): read, change, write.
pub async fn update_settings(
    pool: &DbPool,
    app: AppId,
    change: impl FnOnce(&mut Settings) -> Result<(), String>,
) -> Result<Settings, String> {
    let mut s = repo::settings(pool, app).await.map_err(|e| e.to_string())?;
    change(&mut s)?;
    repo::save_settings(pool, app, &s)
        .await
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Checks a FCM service-account JSON file's fields and key before it is stored.
pub fn check_service_account(v: &Value) -> Result<(), String> {
    for k in ["project_id", "client_email", "private_key"] {
        if v.get(k).and_then(Value::as_str).is_none() {
            return Err(format!("the service account file has no {k}"));
        }
    }
    let pem = v
        .get("private_key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("the service account's private_key does not load: {e}"))
}

/// Checks an APNs `.p8` key before it is stored.
pub fn check_apns_key(pem: &str) -> Result<(), String> {
    jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("the APNs key does not load (a .p8 PKCS#8 EC key is expected): {e}"))
}
