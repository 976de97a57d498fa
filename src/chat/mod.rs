//! The chat domain: dialogs, messages, reactions, unread counts, search. Every mutation is one
//! PostgreSQL transaction, then a domain event. Roles are decided in `rules.rs` only; adapters
//! (REST, XMPP) parse, call one function here, and render.

pub mod dialogs;
mod error;
pub mod events;
pub mod query;
pub mod rules;

use std::sync::Arc;

pub use error::ChatError;
pub use events::{ChatEvent, Events};

use crate::db::DbPool;
use crate::identity::{Caller, Identity};
use crate::model::{Clock, User};

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
}

impl Chat {
    pub fn new(pool: DbPool, clock: Clock, identity: Identity, events: Events) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                clock,
                identity,
                events,
            }),
        }
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

/// The caller's user, or `Forbidden. Need user.` for an application session.
fn me(caller: &Caller) -> Result<&User, ChatError> {
    Ok(caller.user()?)
}
