//! Firebase Cloud Messaging, HTTP v1: the application's service account signs a JWT (RS256)
//! that Google's OAuth2 endpoint trades for an access token (cached until shortly before it
//! expires); each push is a `messages:send` POST with that bearer token. `UNREGISTERED` (or a
//! 404 for the token) means the device is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use super::http::HttpClient;
use super::provider::{by_status, transport, BoxFuture, Job, Outcome, Provider};

/// The OAuth2 scope FCM sends need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

pub struct Fcm {
    http: HttpClient,
    send_url: String,
    token_url: String,
    /// Access tokens by service-account email, with when to stop using them.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// The fields of a service-account JSON file FCM needs.
struct Account {
    project_id: String,
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
}

fn account(v: &Value) -> Option<Account> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(Account {
        project_id: s("project_id")?,
        client_email: s("client_email")?,
        private_key: s("private_key")?,
        private_key_id: s("private_key_id"),
    })
}

impl Fcm {
    pub fn new(http: HttpClient, send_url: String, token_url: String) -> Self {
        Self {
            http,
            send_url,
            token_url,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, email: &str) -> Option<String> {
        let m = self.tokens.lock().ok()?;
        let (t, until) = m.get(email)?;
        (Instant::now() < *until).then(|| t.clone())
    }

    fn forget(&self, email: &str) {
        if let Ok(mut m) = self.tokens.lock() {
            m.remove(email);
        }
    }

    /// A valid access token for `a`: cached, or a fresh JWT exchanged at the token endpoint.
    async fn access_token(&self, a: &Account, now: i64) -> Result<String, Outcome> {
        if let Some(t) = self.cached(&a.client_email) {
            return Ok(t);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = a.private_key_id.clone();
        let claims = json!({
            "iss": a.client_email,
            "scope": SCOPE,
            "aud": self.token_url,
            "iat": now,
            "exp": now + 3600,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(a.private_key.as_bytes())
            .map_err(|e| Outcome::Failed(format!("FCM service account private_key: {e}")))?;
        let jwt = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| Outcome::Failed(format!("FCM JWT: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &jwt)
            .finish();
        let answer = self
            .http
            .send(
                Method::POST,
                &self.token_url,
                &[("content-type", "application/x-www-form-urlencoded")],
                form.into_bytes(),
            )
            .await
            .map_err(|e| transport(&e))?;
        if !answer.status.is_success() {
            return Err(match by_status(answer.status, &answer.body) {
                Outcome::Failed(why) => Outcome::Failed(format!("FCM token endpoint: {why}")),
                other => other,
            });
        }
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| Outcome::Retry("FCM token endpoint answered no JSON".into()))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Outcome::Retry("FCM token endpoint gave no access_token".into()))?
            .to_owned();
        let life = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600)
            .clamp(60, 3600);
        // Renewed a minute early, so a token never expires on its way.
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(60).max(30));
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(a.client_email.clone(), (token.clone(), until));
        }
        Ok(token)
    }

    async fn send(&self, job: &Job<'_>) -> Outcome {
        let Some(a) = job.settings.fcm_service_account.as_ref().and_then(account) else {
            return Outcome::Failed("no FCM service account for this application".into());
        };
        let Some(device) = job.sub.token.as_deref() else {
            return Outcome::Failed("subscription has no device token".into());
        };
        let token = match self.access_token(&a, job.now).await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let n = job.note;
        let mut android = json!({ "priority": "high" });
        if let Some(exp) = n.expiration {
            android["ttl"] = Value::from(format!("{}s", (exp - job.now).max(0)));
        }
        if let Some(note) = &n.android_notification {
            android["notification"] = note.clone();
        }
        let body = json!({
            "message": {
                "token": device,
                "data": n.data_strings(),
                "android": android,
            }
        });
        let url = self.send_url.replace("{project_id}", &a.project_id);
        let bearer = format!("Bearer {token}");
        let answer = match self
            .http
            .send(
                Method::POST,
                &url,
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                body.to_string().into_bytes(),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => return transport(&e),
        };
        let text = String::from_utf8_lossy(&answer.body);
        match answer.status.as_u16() {
            200..=299 => Outcome::Delivered,
            404 => Outcome::DeadToken("FCM: UNREGISTERED".into()),
            _ if text.contains("UNREGISTERED") => Outcome::DeadToken("FCM: UNREGISTERED".into()),
            401 => {
                // The cached token was revoked or expired early: a fresh one next time.
                self.forget(&a.client_email);
                Outcome::Retry("FCM: 401, access token refreshed".into())
            }
            _ => by_status(answer.status, &answer.body),
        }
    }
}

impl Provider for Fcm {
    fn channels(&self) -> &'static [&'static str] {
        &["gcm"]
    }

    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(job))
    }
}
