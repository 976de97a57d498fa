//! The one interface every push provider implements, and what a delivery attempt can come to.

use std::future::Future;
use std::pin::Pin;

use super::payload::Notification;
use crate::db::push::{Settings, Subscription};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How one attempt ended; the worker turns it into delete, retry or dead letter.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// The provider says the device token (or Web Push endpoint) is gone for good: the
    /// subscription is removed.
    DeadToken(String),
    /// Worth trying again later (network, 429, 5xx, an expired provider token).
    Retry(String),
    /// Never going to work as it is (no credentials, a request the provider refuses): straight
    /// to the dead-letter table.
    Failed(String),
}

/// One push to one device.
pub struct Job<'a> {
    pub sub: &'a Subscription,
    pub settings: &'a Settings,
    pub note: &'a Notification,
    /// Unix seconds now (JWT `iat`).
    pub now: i64,
}

/// A push provider: FCM (`gcm`), APNs (`apns`, `apns_voip`), Web Push (`web`).
pub trait Provider: Send + Sync {
    /// The subscription channels it serves.
    fn channels(&self) -> &'static [&'static str];
    fn deliver<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Outcome>;
}

/// The outcome of an HTTP failure that is not the provider's answer.
pub fn transport(e: &super::http::HttpError) -> Outcome {
    Outcome::Retry(e.to_string())
}

/// The common reading of a provider status with no more specific meaning.
pub fn by_status(status: hyper::StatusCode, body: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(super::payload::cut_bytes(body, 300)).into_owned();
    if status.is_success() {
        Outcome::Delivered
    } else if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        Outcome::Retry(format!("{status}: {text}"))
    } else {
        Outcome::Failed(format!("{status}: {text}"))
    }
}
