//! The XMPP adapter's part of a cluster (`hub::cluster`): what this node does when another node
//! hands it something. It parses stanzas from the bus with the stream's bounded parser; keeps
//! offline a message whose recipient left this node before it arrived; tells local contacts a
//! user of a dead node is unavailable; and applies other nodes' room-membership and privacy
//! invalidations to this node's caches. It also publishes this node's invalidations.
//!
//! Rooms: this node delivers another node's room stanza to its own recipients with the same
//! checks as its own fan-out (`muc::deliver_here`, one ordered worker so a room's messages keep
//! their order), shows its occupants the presences of other nodes' occupants, and their
//! unavailable presence when their node dies or leaves; a room kick or ban made here reaches the
//! node holding the occupant's joined connections (`Notice::Kicked`). Which occupants other
//! nodes hold is kept by `hub::rooms` from `hub::cluster`.

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

use super::ext::{muc, offline, roster};
use super::ns;
use super::stanza::{MessageType, UserKey};
use super::stream::{parse_standalone, Element};
use super::Services;
use crate::chat::{ChatEvent, Subscription};
use crate::hub::cluster::Local;
use crate::hub::rooms::{Occupant, RoomKey};
use crate::model::{AppId, UserId};
use crate::ops::telemetry::QUEUE_DROPS;

/// Invalidations that cross nodes, as `hub::cluster` notices.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
enum Notice {
    /// A dialog's membership changed (`removed` left it) or it was deleted.
    Room {
        app: i64,
        dialog: String,
        removed: Vec<i64>,
        deleted: bool,
    },
    /// A user's privacy lists, block list or roster changed.
    Privacy { app: i64, user: i64 },
    /// The sender missed some of its own membership changes (its event subscription lagged):
    /// every node forgets its cached room memberships, as the sender's own room watcher does.
    RoomsStale,
    /// An occupant was kicked (307) or banned (301) from a room on the sender: the node holding
    /// their joined connections takes them out and tells them (the others were shown it).
    Kicked {
        app: i64,
        dialog: String,
        user: i64,
        code: String,
    },
}

/// This node, as the cluster sees it.
pub struct Node {
    services: Weak<Services>,
    /// Room stanzas from other nodes, for the worker that delivers them in order.
    rooms: mpsc::Sender<RoomStanza>,
}

/// Another node's room stanza for some of this node's users.
struct RoomStanza {
    app: AppId,
    sender: i64,
    users: Vec<i64>,
    stanza: Element,
}

impl Node {
    /// This node; starts the worker that delivers other nodes' room stanzas (its queue holds
    /// `cluster.receive_queue` of them).
    pub fn new(services: &Arc<Services>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(services.config.cluster.receive_queue.max(1));
        tokio::spawn(deliver_rooms(Arc::downgrade(services), rx));
        Arc::new(Self {
            services: Arc::downgrade(services),
            rooms: tx,
        })
    }
}

/// Delivers other nodes' room stanzas one after the other (the privacy check may wait on the
/// database; one worker keeps a room's messages in the order they crossed).
async fn deliver_rooms(services: Weak<Services>, mut rx: mpsc::Receiver<RoomStanza>) {
    while let Some(r) = rx.recv().await {
        let Some(s) = services.upgrade() else {
            return;
        };
        for uid in r.users {
            let to = UserKey {
                app: r.app,
                user: UserId(uid),
            };
            muc::deliver_here(&s, r.sender, to, &r.stanza).await;
        }
    }
}

fn key(app: i64, user: i64) -> Option<UserKey> {
    (app > 0 && user > 0).then_some(UserKey {
        app: AppId(app),
        user: UserId(user),
    })
}

impl Local for Node {
    fn parse(&self, xml: &[u8]) -> Option<Element> {
        let s = self.services.upgrade()?;
        parse_standalone(xml, &s.transport_config().limits).ok()
    }

    fn undelivered(&self, user: UserKey, stanza: Element) {
        let Some(s) = self.services.upgrade() else {
            return;
        };
        // As routing's Undelivered phase would have on the sender's node: chat kept offline.
        if stanza.name == "message"
            && MessageType::of(&stanza) == Ok(MessageType::Chat)
            && offline::worth_keeping(&stanza)
        {
            tokio::spawn(async move {
                offline::store(&s, user, &stanza).await;
            });
        }
    }

    fn lost(&self, sessions: Vec<(UserKey, String, bool)>) {
        let Some(s) = self.services.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            for (user, resource, available) in sessions {
                if available {
                    unavailable_here(&s, user, &resource).await;
                }
            }
        });
    }

    fn notice(&self, body: serde_json::Value) {
        let Some(s) = self.services.upgrade() else {
            return;
        };
        match serde_json::from_value::<Notice>(body) {
            Ok(Notice::Room {
                app,
                dialog,
                removed,
                deleted,
            }) if app > 0 && dialog.len() <= 64 => {
                let k = (AppId(app), dialog);
                s.hub.rooms.invalidate(&k);
                // This node's occupancy of the room follows, and its occupants see the removed
                // leave; the users themselves were told on every node by the node that made
                // the change.
                if deleted {
                    s.hub.rooms.remove_room(&k);
                } else {
                    for uid in removed {
                        muc::removed_elsewhere(&s, &k, uid);
                    }
                }
            }
            Ok(Notice::Privacy { app, user }) => {
                if let Some(u) = key(app, user) {
                    s.privacy.forget(u);
                }
            }
            Ok(Notice::RoomsStale) => s.hub.rooms.invalidate_all(),
            Ok(Notice::Kicked {
                app,
                dialog,
                user,
                code,
            }) if app > 0
                && user > 0
                && dialog.len() <= 64
                && matches!(code.as_str(), "301" | "307") =>
            {
                muc::kicked_elsewhere(&s, &(AppId(app), dialog), user, &code);
            }
            _ => tracing::warn!("cluster: unreadable notice ignored"),
        }
    }

    fn room_stanza(&self, app: AppId, sender: i64, users: Vec<i64>, stanza: Element) {
        let job = RoomStanza {
            app,
            sender,
            users,
            stanza,
        };
        if self.rooms.try_send(job).is_err() {
            metrics::counter!(QUEUE_DROPS, "queue" => "cluster_rooms").increment(1);
            tracing::warn!("cluster: room stanza queue full: dropped");
        }
    }

    fn room_show(&self, room: RoomKey, user: i64, presences: Vec<Element>) {
        if let Some(s) = self.services.upgrade() {
            muc::show_remote(&s, &room, user, &presences);
        }
    }

    fn rooms_lost(&self, gone: Vec<(RoomKey, Occupant)>) {
        if let Some(s) = self.services.upgrade() {
            muc::lost_remote(&s, gone);
        }
    }
}

/// A user of a node that died is unavailable to this node's connections of the contacts that
/// had their presence (RFC 6121 §4.5.2 says the server generates it when a stream ends
/// ungracefully; here the whole node did).
async fn unavailable_here(s: &Services, user: UserKey, resource: &str) {
    let (subs, _) = roster::presence_both(s, user).await;
    let bare = user.bare_jid(s.domain()).to_string();
    let mut p = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", format!("{bare}/{resource}"));
    for contact in subs {
        p.set_attr("to", contact.bare_jid(s.domain()).to_string());
        s.hub.local_deliver_to_user(contact, &p);
    }
    // The user's own resources on this node see it go too.
    p.set_attr("to", bare);
    s.hub.local_deliver_to_user(user, &p);
}

/// A user's privacy rules changed on this node: every node forgets its cached copy.
pub fn forget_privacy(s: &Services, user: UserKey) {
    s.privacy.forget(user);
    if let Some(c) = s.hub.cluster() {
        c.notify(serde_json::json!(Notice::Privacy {
            app: user.app.0,
            user: user.user.0,
        }));
    }
}

/// An occupant was kicked or banned from a room on this node: the node holding their joined
/// connections (maybe another) takes them out.
pub fn kicked(s: &Services, k: &RoomKey, user: i64, code: &str) {
    send(
        s,
        &Notice::Kicked {
            app: k.0 .0,
            dialog: k.1.clone(),
            user,
            code: code.to_owned(),
        },
    );
}

/// Publishes this node's room-membership changes to the other nodes, until shutdown.
pub async fn forward_events(
    s: Arc<Services>,
    mut events: Subscription,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => forward(&s, &e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!(QUEUE_DROPS, "queue" => "cluster_events").increment(n);
                    // Which invalidations were missed is unknown: the others drop them all.
                    send(&s, &Notice::RoomsStale);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn send(s: &Services, notice: &Notice) {
    if let (Some(c), Ok(body)) = (s.hub.cluster(), serde_json::to_value(notice)) {
        c.notify(body);
    }
}

fn forward(s: &Services, e: &ChatEvent) {
    let notice = match e {
        ChatEvent::OccupantsChanged {
            app,
            dialog,
            removed,
            ..
        } => Notice::Room {
            app: app.0,
            dialog: dialog.to_string(),
            removed: removed.clone(),
            deleted: false,
        },
        ChatEvent::DialogDeleted { app, dialog, .. } => Notice::Room {
            app: app.0,
            dialog: dialog.to_string(),
            removed: Vec::new(),
            deleted: true,
        },
        _ => return,
    };
    send(s, &notice);
}
