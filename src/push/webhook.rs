//! Webhooks to the application's backend: the event as JSON, POSTed with
//! `X-Parley-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook secret>`,
//! `X-Parley-Event` and `X-Parley-Delivery` (the outbox id: the same on every retry, so the
//! receiver can drop duplicates of this at-least-once delivery). A 2xx answer is delivered;
//! anything else is retried with backoff, then dead-lettered.

use hmac::{Hmac, Mac};
use hyper::Method;
use sha2::Sha256;

use super::http::HttpClient;
use super::provider::{transport, Outcome};

/// Every event a webhook may subscribe to.
pub const EVENTS: [&str; 8] = [
    "message.created",
    "message.updated",
    "message.deleted",
    "dialog.created",
    "dialog.updated",
    "dialog.deleted",
    "user.online",
    "user.offline",
];

/// `sha256=<hex>` of `body` keyed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| Hmac::<Sha256>::new_from_slice(b"").expect("HMAC takes any key"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn call(
    http: &HttpClient,
    url: &str,
    secret: &str,
    event: &str,
    delivery: i64,
    body: &[u8],
) -> Outcome {
    let sig = signature(secret, body);
    let delivery = delivery.to_string();
    match http
        .send(
            Method::POST,
            url,
            &[
                ("content-type", "application/json"),
                ("user-agent", "Parley-Webhook/1"),
                ("x-parley-signature", &sig),
                ("x-parley-event", event),
                ("x-parley-delivery", &delivery),
            ],
            body.to_vec(),
        )
        .await
    {
        Ok(a) if a.status.is_success() => Outcome::Delivered,
        Ok(a) => Outcome::Retry(format!("webhook answered {}", a.status)),
        Err(e) => transport(&e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_the_rfc_4231_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
