//! Apple Push Notification service, token-based, over HTTP/2: an ES256 JWT (`kid` = key id,
//! `iss` = team id) signed with the application's `.p8` key and reused for 40 minutes (Apple
//! refuses one older than an hour, and one renewed too often); `apns-topic` is the bundle id
//! (`.voip` appended for VoIP pushes), `apns-push-type` alert, background or voip. A 410, or a
//! 400 `BadDeviceToken`, means the device is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Map, Value};

use super::http::HttpClient;
use super::provider::{by_status, transport, BoxFuture, Job, Outcome, Provider};

pub const PRODUCTION: &str = "https://api.push.apple.com";
pub const DEVELOPMENT: &str = "https://api.sandbox.push.apple.com";
/// How long one provider token is used.
const TOKEN_LIFE: Duration = Duration::from_secs(40 * 60);

pub struct Apns {
    http: HttpClient,
    /// `push.apns_url`; empty = by the subscription's environment.
    base_url: String,
    /// Provider tokens by (team id, key id).
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl Apns {
    pub fn new(http: HttpClient, base_url: String) -> Self {
        Self {
            http,
            base_url,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn token(&self, key: &str, key_id: &str, team: &str, now: i64) -> Result<String, Outcome> {
        let id = (team.to_owned(), key_id.to_owned());
        if let Some((t, until)) = self.tokens.lock().ok().and_then(|m| m.get(&id).cloned()) {
            if Instant::now() < until {
                return Ok(t);
            }
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key_id.to_owned());
        let claims = json!({ "iss": team, "iat": now });
        let key = jsonwebtoken::EncodingKey::from_ec_pem(key.as_bytes())
            .map_err(|e| Outcome::Failed(format!("APNs key: {e}")))?;
        let jwt = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| Outcome::Failed(format!("APNs JWT: {e}")))?;
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(id, (jwt.clone(), Instant::now() + TOKEN_LIFE));
        }
        Ok(jwt)
    }

    fn forget(&self, team: &str, key_id: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.remove(&(team.to_owned(), key_id.to_owned()));
        }
    }

    async fn send(&self, job: &Job<'_>) -> Outcome {
        let s = job.settings;
        let (Some(key), Some(key_id), Some(team)) = (
            s.apns_key.as_deref(),
            s.apns_key_id.as_deref(),
            s.apns_team_id.as_deref(),
        ) else {
            return Outcome::Failed("no APNs key for this application".into());
        };
        let Some(topic) = job
            .sub
            .bundle_identifier
            .as_deref()
            .filter(|b| !b.is_empty())
            .or(s.apns_topic.as_deref())
        else {
            return Outcome::Failed("no APNs topic (bundle id) for this application".into());
        };
        let Some(device) = job.sub.token.as_deref() else {
            return Outcome::Failed("subscription has no device token".into());
        };
        if !device.bytes().all(|b| b.is_ascii_hexdigit()) || device.len() > 200 {
            return Outcome::DeadToken("APNs: the device token is not hex".into());
        }
        let jwt = match self.token(key, key_id, team, job.now) {
            Ok(t) => t,
            Err(o) => return o,
        };
        let n = job.note;
        let voip = job.sub.channel == "apns_voip";
        let background = !voip
            && (n.ios_push_type.as_deref() == Some("background")
                || (n.message.is_none() && n.content_available));
        let push_type = if voip {
            "voip"
        } else if background {
            "background"
        } else {
            "alert"
        };
        let topic = if voip {
            format!("{topic}.voip")
        } else {
            topic.to_owned()
        };
        let mut aps = Map::new();
        if let (Some(m), false) = (&n.message, background) {
            aps.insert("alert".into(), json!({ "body": m }));
        }
        if let Some(b) = n.badge {
            aps.insert("badge".into(), b.into());
        }
        if let Some(snd) = &n.sound {
            aps.insert("sound".into(), snd.clone().into());
        }
        if n.content_available || background {
            aps.insert("content-available".into(), 1.into());
        }
        if n.mutable_content {
            aps.insert("mutable-content".into(), 1.into());
        }
        if let Some(c) = &n.category {
            aps.insert("category".into(), c.clone().into());
        }
        if let Some(t) = &n.thread_id {
            aps.insert("thread-id".into(), t.clone().into());
        }
        let mut body = n.custom.clone();
        body.insert("aps".into(), Value::Object(aps));
        let base = match (self.base_url.as_str(), job.sub.environment.as_str()) {
            ("", "development") => DEVELOPMENT,
            ("", _) => PRODUCTION,
            (url, _) => url,
        };
        let url = format!("{}/3/device/{device}", base.trim_end_matches('/'));
        let bearer = format!("bearer {jwt}");
        let expiration = n.expiration.unwrap_or(0).to_string();
        let priority = if background { "5" } else { "10" };
        let answer = match self
            .http
            .send(
                Method::POST,
                &url,
                &[
                    ("authorization", &bearer),
                    ("apns-topic", &topic),
                    ("apns-push-type", push_type),
                    ("apns-priority", priority),
                    ("apns-expiration", &expiration),
                    ("content-type", "application/json"),
                ],
                Value::Object(body).to_string().into_bytes(),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => return transport(&e),
        };
        let reason = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        match (answer.status.as_u16(), reason.as_str()) {
            (200, _) => Outcome::Delivered,
            (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
                Outcome::DeadToken(format!("APNs: {} {reason}", answer.status.as_u16()))
            }
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.forget(team, key_id);
                Outcome::Retry(format!("APNs: {reason}, provider token renewed"))
            }
            _ => by_status(answer.status, &answer.body),
        }
    }
}

impl Provider for Apns {
    fn channels(&self) -> &'static [&'static str] {
        &["apns", "apns_voip"]
    }

    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(job))
    }
}
