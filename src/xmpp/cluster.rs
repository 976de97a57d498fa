//! The XMPP adapter's part of a cluster (`hub::cluster`): what this node does when another node
//! hands it something. It parses stanzas from the bus with the stream's bounded parser; keeps
//! offline a message whose recipient left this node before it arrived; tells local contacts a
//! user of a dead node is unavailable; and applies other nodes' room-membership and privacy
//! invalidations to this node's caches. It also publishes this node's invalidations.
//!
//! Per user: message carbons (XEP-0280) go to the nodes holding the user's other connections,
//! once per node, and are copied there by the rules of `ext::carbons` (only that node knows which
//! of its connections enabled carbons or announced caps); a user's first connection and last
//! disconnection anywhere in the cluster reach the status-streaming subscribers of every node
//! (subscriptions are per connection, so kept where the subscriber is; the change is
//! broadcast, one notice per online/offline transition); a user of a dead node is pushed as
//! offline to the subscribers here. Last activity reads `Hub::is_online`, which covers other
//! nodes' sessions already.
//!
//! Rooms: this node delivers another node's room stanza to its own recipients with the same
//! checks as its own fan-out (`muc::deliver_here`, one ordered worker so a room's messages keep
//! their order), shows its occupants the presences of other nodes' occupants, and their
//! unavailable presence when their node dies or leaves; a room kick or ban made here reaches the
//! node holding the occupant's joined connections (`Notice::Kicked`); a private message through
//! a room goes to the nodes holding its recipient's connections, which deliver it to those
//! joined to the room there (`ForUser::Private`). Which occupants other nodes hold is kept by
//! `hub::rooms` from `hub::cluster`.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::ext::{carbons, muc, offline, roster, status_streaming};
use super::ns;
use super::stanza::{MessageType, UserKey};
use super::stream::{parse_standalone, Element};
use super::Services;
use crate::chat::{ChatEvent, Subscription};
use crate::db;
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
    /// A user's first connection in the cluster bound (`online`), or their last one ended:
    /// this node's status-streaming subscribers are told.
    Status { app: i64, user: i64, online: bool },
    /// An occupant was kicked (307) or banned (301) from a room on the sender: the node holding
    /// their joined connections takes them out and tells them (the others were shown it).
    Kicked {
        app: i64,
        dialog: String,
        user: i64,
        code: String,
    },
}

/// Notices about one user for the nodes holding that user's connections
/// (`Cluster::notify_user`; the user travels in the envelope).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
enum ForUser {
    /// A message the user sent (`received` false) or received on resource `skip` (true): the
    /// original, for a carbon to each of the user's connections here that wants it.
    Carbon {
        received: bool,
        skip: Option<String>,
        xml: String,
    },
    /// A private message through room `dialog` (of the user's application) to the user, from
    /// `room/{nick}`, already checked by the sender's node: for the user's connections joined
    /// to that room here only.
    Private { dialog: String, xml: String },
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
            // A set: a dead node may have held `cluster.max_remote_sessions` users.
            let mut gone: Vec<UserKey> = Vec::new();
            let mut counted: HashSet<UserKey> = HashSet::new();
            for (user, resource, available) in sessions {
                if available {
                    unavailable_here(&s, user, &resource).await;
                }
                if !counted.contains(&user) && !s.hub.is_online(user) {
                    counted.insert(user);
                    gone.push(user);
                }
            }
            // Their node cannot record their last activity nor tell status subscribers any
            // more: every surviving node does (the same moment, give or take a heartbeat; the
            // write is an upsert, so N - 1 of them are harmless) and tells its own subscribers.
            let now = s.clock.now();
            if let Err(e) = db::xmpp::last_seen_set_many(&s.pool, &gone, now).await {
                tracing::warn!(error = %e, "recording a dead node's users' last activity");
            }
            for user in gone {
                let bare = user.bare_jid(s.domain()).to_string();
                status_streaming::push_status_here(&s, user, &bare, 0, true);
            }
        });
    }

    fn user_notice(&self, user: UserKey, body: serde_json::Value) {
        let Some(s) = self.services.upgrade() else {
            return;
        };
        match serde_json::from_value::<ForUser>(body) {
            Ok(ForUser::Carbon {
                received,
                skip,
                xml,
            }) => {
                // Checked as if it came from a socket: bounded parse, a 1:1 message only, and
                // eligible for carbons by this node's reading of it.
                let msg = match self.parse(xml.as_bytes()) {
                    Some(m) if m.name == "message" && m.ns == ns::CLIENT => m,
                    _ => return refused("carbon is not a message"),
                };
                if !carbons::eligible(&msg) {
                    return refused("carbon of an ineligible message");
                }
                carbons::copy_here(&s, user, received, &msg, |c| {
                    skip.as_deref() == Some(c.resource.as_str())
                });
            }
            Ok(ForUser::Private { dialog, xml }) if dialog.len() <= 64 => {
                // A room's private message only: a bounded parse, `chat` from the room with
                // its `<x muc#user/>`, delivered to none but connections joined here.
                let msg = match self.parse(xml.as_bytes()) {
                    Some(m)
                        if m.name == "message"
                            && m.ns == ns::CLIENT
                            && MessageType::of(&m) == Ok(MessageType::Chat)
                            && m.attr("from").is_some()
                            && m.child("x", ns::MUC_USER).is_some() =>
                    {
                        m
                    }
                    _ => return refused("private message is not one"),
                };
                muc::deliver_joined_here(&s, &(user.app, dialog), user, &msg);
            }
            Ok(ForUser::Private { .. }) | Err(_) => refused("unreadable user notice"),
        }
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
            Ok(Notice::Status { app, user, online }) => {
                if let Some(u) = key(app, user) {
                    let bare = u.bare_jid(s.domain()).to_string();
                    status_streaming::push_status_here(&s, u, &bare, 0, !online);
                }
            }
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

fn refused(why: &'static str) {
    metrics::counter!(QUEUE_DROPS, "queue" => "cluster_refused").increment(1);
    tracing::warn!(why, "cluster: notice refused");
}

/// Sends the original of a carbon to the other nodes holding connections of `user` (but not
/// only `skip`, the resource that took it), once per node; each copies it to its own
/// connections that want it ([`carbons::copy_here`]). Nothing on a single node.
pub fn carbons_elsewhere(
    s: &Services,
    user: UserKey,
    received: bool,
    skip: Option<&str>,
    msg: &Element,
) {
    let Some(c) = s.hub.cluster() else {
        return;
    };
    let notice = ForUser::Carbon {
        received,
        skip: skip.map(str::to_owned),
        xml: msg.to_standalone_xml(),
    };
    if let Ok(body) = serde_json::to_value(&notice) {
        c.notify_user(user, skip, body);
    }
}

/// A private message through room `k` for `user`: the other nodes holding their connections
/// deliver it to those joined to the room there (nothing on a single node; a node where none
/// has joined delivers nothing). Never kept offline: a room's private messages are not stored.
pub fn private_elsewhere(s: &Services, k: &RoomKey, user: UserKey, msg: &Element) {
    let Some(c) = s.hub.cluster() else {
        return;
    };
    let notice = ForUser::Private {
        dialog: k.1.clone(),
        xml: msg.to_standalone_xml(),
    };
    if let Ok(body) = serde_json::to_value(&notice) {
        c.notify_user(user, None, body);
    }
}

/// A user's first connection anywhere bound (`online`) or their last one ended: the other
/// nodes tell their status-streaming subscribers. Nothing on a single node.
pub fn status_elsewhere(s: &Services, user: UserKey, online: bool) {
    send(
        s,
        &Notice::Status {
            app: user.app.0,
            user: user.user.0,
            online,
        },
    );
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
    events: Subscription,
    shutdown: watch::Receiver<bool>,
) {
    events
        .follow(
            shutdown,
            |e| forward(&s, &e),
            |n| {
                metrics::counter!(QUEUE_DROPS, "queue" => "cluster_events").increment(n);
                // Which invalidations were missed is unknown: the others drop them all.
                send(&s, &Notice::RoomsStale);
            },
        )
        .await;
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
