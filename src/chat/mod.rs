//! The chat domain: dialogs, messages, reactions, unread counts, search. Every mutation is one
//! PostgreSQL transaction, then a domain event. Roles and visibility are decided in `rules.rs`
//! only; adapters (REST, XMPP) parse, call one function here, and render. It must not import
//! an adapter or the hub (checked by `lib.rs`'s layering test): live delivery follows its
//! events.

pub mod archive;
pub mod calls;
pub mod dialogs;
mod error;
pub mod events;
mod history;
pub mod messages;
mod params;
pub mod query;
pub mod rooms;
pub mod rules;

use std::sync::Arc;

pub use error::ChatError;
pub use events::{ChatEvent, Events, Subscription};

use crate::config::ChatConfig;
use crate::db::DbPool;
use crate::identity::{Caller, Identity};
use crate::limits::rate::{retry_after_secs, KeyedLimiter};
use crate::model::{AppId, Application, Clock, UserId};

/// The chat service: cheap to clone, shared by every adapter.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    clock: Clock,
    identity: Identity,
    events: Events,
    config: ChatConfig,
    writer: history::Writer,
    /// Messages per user (`chat.messages_per_sec_per_user`), REST and XMPP together.
    message_rate: KeyedLimiter<(i64, i64)>,
    /// Which applications have push credentials (`push.credentials_cache_secs`).
    push_apps: messages::PushApps,
}

impl Chat {
    pub fn new(
        pool: DbPool,
        clock: Clock,
        identity: Identity,
        events: Events,
        config: ChatConfig,
        push_credentials_ttl: std::time::Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                clock,
                identity,
                events,
                push_apps: messages::PushApps::new(push_credentials_ttl),
                message_rate: KeyedLimiter::new(
                    config.messages_per_sec_per_user,
                    config.message_burst_per_user,
                    config.message_rate_max_users,
                ),
                config,
                writer: Default::default(),
            }),
        }
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The one message-rate rule: every message a user sends (REST `POST /chat/Message` and
    /// `/chat/Message/system`, every XMPP message stanza) takes a token from that user's bucket;
    /// past the rate it is refused with `RateLimited` and goes nowhere.
    pub fn admit_message(&self, app: AppId, user: UserId) -> Result<(), ChatError> {
        let cfg = &self.inner.config;
        self.inner
            .message_rate
            .check(&(app.0, user.0))
            .map_err(|wait| ChatError::RateLimited {
                message: format!(
                    "Too many messages: at most {} per second (bursts of {})",
                    cfg.messages_per_sec_per_user, cfg.message_burst_per_user
                ),
                retry_after_secs: retry_after_secs(wait),
            })
    }

    /// The `user.online` / `user.offline` webhook events: a user's first XMPP connection bound,
    /// or their last one closed. Unlike the other events there is no transaction to join (the
    /// presence lives in memory), so a crash between the change and this insert loses that one
    /// event; a failure is logged, never the connection's problem.
    pub async fn presence_changed(&self, user: crate::model::UserKey, online: bool) {
        let event = if online {
            "user.online"
        } else {
            "user.offline"
        };
        let now = self.clock().now();
        let data = vec![(
            user.app.0,
            serde_json::json!({ "user_id": user.user.0, "at": now.unix_timestamp() }),
        )];
        let done = async {
            let mut client = self.pool().get().await?;
            let tx = client.transaction().await?;
            crate::db::push::enqueue_webhooks(&tx, event, &data, now).await?;
            tx.commit().await?;
            Ok::<_, ChatError>(())
        };
        if let Err(e) = done.await {
            tracing::warn!(error = %e, event, "enqueueing a presence webhook");
        }
    }

    fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

/// Who acts: a user of an application. REST builds it from a user session, XMPP from an
/// authenticated stream.
#[derive(Clone, Debug)]
pub struct Actor {
    pub app: Application,
    pub user: UserId,
    /// Acting through an XMPP stream, which relays its own stanzas: events it causes are not
    /// delivered a second time by the REST → XMPP fan-out.
    pub from_stream: bool,
}

impl TryFrom<&Caller> for Actor {
    type Error = ChatError;

    /// `Forbidden. Need user.` for an application session.
    fn try_from(c: &Caller) -> Result<Self, ChatError> {
        Ok(Actor {
            from_stream: false,
            app: c.app.clone(),
            user: c.user()?.id,
        })
    }
}
