//! Domain events, published only after their transaction commits. The XMPP adapter
//! (`xmpp/fanout.rs`, `xmpp/ext/muc.rs`) turns them into stanzas for connected users; nothing
//! here knows about XMPP or the hub.

use std::time::Instant;

use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::model::{AppId, DialogType, ObjectId};

#[derive(Clone, Debug, PartialEq)]
pub enum ChatEvent {
    /// Occupants joined or left a dialog (REST push/pull, subscribe/unsubscribe, leave).
    OccupantsChanged {
        app: AppId,
        dialog: ObjectId,
        added: Vec<i64>,
        removed: Vec<i64>,
    },
    /// A dialog was deleted for everyone; `occupants` were its members.
    DialogDeleted {
        app: AppId,
        dialog: ObjectId,
        occupants: Vec<i64>,
    },
    /// A message to deliver in real time (`send_to_chat=1`); `message` is its REST shape.
    MessageSent {
        app: AppId,
        dialog: ObjectId,
        kind: DialogType,
        recipients: Vec<i64>,
        message: Value,
    },
    /// Messages edited by their sender.
    MessageEdited {
        app: AppId,
        dialog: ObjectId,
        kind: DialogType,
        /// Done by an XMPP stream, which relays its own stanza (no second delivery).
        from_stream: bool,
        message: ObjectId,
        sender: i64,
        body: String,
        recipients: Vec<i64>,
    },
    /// Messages deleted for everyone.
    MessagesDeleted {
        app: AppId,
        dialog: ObjectId,
        kind: DialogType,
        /// Done by an XMPP stream, which relays its own stanza (no second delivery).
        from_stream: bool,
        messages: Vec<ObjectId>,
        by: i64,
        recipients: Vec<i64>,
    },
    /// Messages marked read or delivered by `by`; senders are told.
    MessagesMarked {
        app: AppId,
        dialog: ObjectId,
        messages: Vec<(ObjectId, i64)>,
        by: i64,
        read: bool,
        /// Done by an XMPP stream, which relays its own marker (no second delivery).
        from_stream: bool,
    },
    /// A reaction added and/or removed.
    ReactionChanged {
        app: AppId,
        dialog: ObjectId,
        kind: DialogType,
        message: ObjectId,
        by: i64,
        add: Option<String>,
        remove: Option<String>,
        recipients: Vec<i64>,
    },
    /// A call signal sent through REST (`POST /calls/reject`): a `WebRTCVideoChat` headline to
    /// one user, never stored.
    CallSignal {
        app: AppId,
        id: ObjectId,
        from: i64,
        to: i64,
        params: serde_json::Map<String, Value>,
    },
    /// `POST /chat/Message/system`: a headline to one user, never stored.
    SystemMessage {
        app: AppId,
        id: ObjectId,
        from: i64,
        to: i64,
        params: serde_json::Map<String, Value>,
    },
}

/// The in-process event bus. A cluster bus (NATS) later implements the same two calls.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Published>,
}

/// An event with the moment it was published, so the fan-out can measure its lag.
#[derive(Clone, Debug)]
struct Published {
    at: Instant,
    event: ChatEvent,
}

/// A subscriber's end of the bus. Like `broadcast::Receiver`: a subscriber that falls more
/// than the bus's capacity behind gets `Lagged` and misses events.
pub struct Subscription(broadcast::Receiver<Published>);

impl Subscription {
    pub async fn recv(&mut self) -> Result<ChatEvent, RecvError> {
        Ok(self.0.recv().await?.event)
    }

    /// The next event and when it was published.
    pub async fn recv_timed(&mut self) -> Result<(ChatEvent, Instant), RecvError> {
        self.0.recv().await.map(|p| (p.event, p.at))
    }

    pub fn try_recv(&mut self) -> Result<ChatEvent, TryRecvError> {
        Ok(self.0.try_recv()?.event)
    }

    /// Follows the events until `shutdown` changes or the bus closes: `each` for every event,
    /// `lagged(n)` when `n` were missed because this subscriber fell behind (which ones is
    /// unknown, so a follower that keeps derived state must drop all of it).
    pub async fn follow(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut each: impl FnMut(ChatEvent),
        mut lagged: impl FnMut(u64),
    ) {
        loop {
            tokio::select! {
                e = self.recv() => match e {
                    Ok(e) => each(e),
                    Err(RecvError::Lagged(n)) => lagged(n),
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }

    /// Publishes after commit; having no listener is fine.
    pub fn publish(&self, e: ChatEvent) {
        let _ = self.tx.send(Published {
            at: Instant::now(),
            event: e,
        });
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription(self.tx.subscribe())
    }
}
