//! Several nodes as one server: what crosses the bus (`hub::bus`) and the directory of the
//! other nodes' sessions built from it. PostgreSQL stays the one record; the bus carries only
//! live traffic, so losing a bus message loses a live delivery, never anything acknowledged.
//!
//! What travels (one JSON envelope per bus message, `{"from", "inc", "msg"}`):
//! - `hello`: a node started (or reconnected, or met an unknown node): the others send their
//!   sessions (`sessions`, in chunks under `cluster.max_message_bytes`). Request/reply would
//!   give one answer and every node must answer; and the answer goes to *all*, not to the
//!   asker's subject, because the bus keeps order only per subject: a snapshot overtaken by a
//!   later `unbound` on the other subject would leave a session that no longer exists. Other
//!   nodes apply a snapshot idempotently; the price is N² entries once per node start.
//! - `heartbeat` every `cluster.heartbeat_ms`; a node silent for `cluster.node_timeout_ms` is
//!   dead: its sessions leave the directory and the adapter is told ([`Local::lost`]) so local
//!   contacts and rooms get unavailable presence. `leaving` on a clean shutdown does the same at
//!   once. `inc` (a random number per process) tells a restarted node from its earlier life.
//! - `bound` / `unbound` / `presence`: a session of the sender began, ended, or changed its
//!   availability. A `bound` for a resource a local stream holds closes that stream with
//!   `<conflict/>` (the newer stream wins, as on one node).
//! - `stanza`: an addressed stanza for one user (all their connections there, one resource, or
//!   each connection addressed to its full JID), serialised with the XML writer and parsed on
//!   arrival with the adapter's bounded stream parser ([`Local::parse`]). One message per node
//!   holding sessions of the user, never one per session.
//! - `notice`: an opaque JSON notice for the adapter (chat events for the room watchers, cache
//!   invalidations), handed to [`Local::notice`].
//! - `user_notice`: an opaque JSON notice about one user for the nodes holding that user's
//!   sessions (one message per node, none when the user has no session elsewhere), handed to
//!   [`Local::user_notice`]: what only the node holding a connection can decide for it, such
//!   as whether it gets a message carbon.
//! - `occupant` (to all): what the sender now holds of one user in one room (nick and room
//!   presence, or nothing: they left it there) and the presences the other nodes show their own
//!   occupants (join, nick change, leave), so every node knows every room's occupants
//!   (`hub::rooms`); `occupancy`: the same as a snapshot, sent with `sessions`. A node's
//!   occupants leave every room on the others when it dies or leaves ([`Local::rooms_lost`]).
//!   Bounded by `cluster.max_remote_occupants`.
//! - `room_stanza`: a room's stanza for the recipients on one node (their user ids), one
//!   message per node holding recipients, never one per recipient; that node delivers as its
//!   own fan-out would ([`Local::room_stanza`]: privacy, each connection addressed).
//!
//! Everything received is hostile input: envelope and stanza sizes are bounded, ids checked
//! (positive application and user ids, resources of 1–1023 bytes, node names as subject
//! tokens), and the directory is bounded (`cluster.max_remote_sessions`, `cluster.max_nodes`).
//! Anything that does not pass is dropped and counted.
//!
//! While the bus is down ([`Bus::is_up`] false) the directory is not consulted: other nodes'
//! users count as offline at once (so 1:1 messages to them are stored offline, not sent into a
//! dead connection), and after `node_timeout_ms` their nodes are declared dead as above. When
//! the bus is back, heartbeats from nodes no longer known trigger a `hello` to them, and their
//! snapshots rebuild the directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::bus::{Bus, To};
use super::rooms::{Occupant, RoomKey};
use super::Hub;
use crate::model::{AppId, ObjectId, UserId, UserKey};
use crate::ops::telemetry::{CLUSTER_ROOM_MESSAGES, QUEUE_DROPS};
use crate::xml::{Element, Scope};

/// What the adapter lends the cluster: the hub parses no XML and knows no presence rules.
pub trait Local: Send + Sync + 'static {
    /// Parses one stanza from the bus with the adapter's bounded parser; `None` refuses it.
    fn parse(&self, xml: &[u8]) -> Option<Element>;
    /// A stanza for `user` arrived from another node but no local connection took it (the
    /// user left meanwhile): keep it as if the sender's node had found them offline.
    fn undelivered(&self, user: UserKey, stanza: Element);
    /// Sessions of another node ended without that node saying so one by one (it died, left
    /// or restarted): `(user, resource, was available)`. Tell local contacts and rooms.
    fn lost(&self, sessions: Vec<(UserKey, String, bool)>);
    /// A notice published by another node (see [`Cluster::notify`]).
    fn notice(&self, body: serde_json::Value);
    /// A notice about `user`, sent to this node because it holds sessions of theirs (see
    /// [`Cluster::notify_user`]). Ignored unless the adapter handles it.
    fn user_notice(&self, user: UserKey, body: serde_json::Value) {
        let _ = (user, body);
    }
    /// A room stanza from another node for these users of this node: delivered as a local
    /// fan-out does (same checks, each connection addressed), in the order received.
    fn room_stanza(&self, _app: AppId, _sender: i64, _users: Vec<i64>, _stanza: Element) {}
    /// Another node's occupant `user` changed in `room`: show `presences` (from the room, no
    /// `to`) to this node's occupants of it, but `user`.
    fn room_show(&self, _room: RoomKey, _user: i64, _presences: Vec<Element>) {}
    /// Occupants that left their rooms because the node holding them died, left or restarted:
    /// their unavailable presence to this node's occupants.
    fn rooms_lost(&self, _gone: Vec<(RoomKey, Occupant)>) {}
}

/// The cluster's settings (from `cluster.*`; the hub does not read the configuration).
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: String,
    pub heartbeat: Duration,
    pub node_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_remote_sessions: usize,
    pub max_nodes: usize,
    /// Most occupants of other nodes kept in this node's rooms (`cluster.max_remote_occupants`).
    pub max_remote_occupants: usize,
    /// The bound on what a room keeps of an occupant's presence (`xmpp.room_presence_max_bytes`):
    /// another node's occupant is held to it too, with room for the MUC item around it.
    pub max_room_presence_bytes: usize,
    /// What a room presence may add around that payload: [`room_presence_slack`].
    pub room_presence_slack: usize,
}

/// Longest resource part (RFC 7622 §3.4).
const MAX_RESOURCE: usize = 1023;

/// One session as it travels.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Sess {
    app: i64,
    user: i64,
    resource: String,
    available: bool,
}

/// How a stanza reaches a user's connections on the receiving node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Target {
    /// Every connection of the user (`Hub::deliver_to_user`).
    User,
    /// The connection bound to `r` only.
    Resource { r: String },
    /// Every connection, each copy addressed to `{bare}/{resource}` (room traffic).
    Addressed { bare: String },
}

/// One occupant of a room as it travels: the room (application, dialog id), the user, their
/// nick there and the room's presence for them (XML).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Occ {
    app: i64,
    dialog: String,
    user: i64,
    nick: String,
    presence: String,
}

/// Most presences one occupant change shows (a nick change: two).
const MAX_SHOWN: usize = 4;

/// The most bytes one character of an attribute value takes once written: `'` and `"` become
/// `&apos;` and `&quot;` (a non-ASCII character is at most 4 bytes and written as it is).
const MAX_ATTR_CHAR: usize = 6;

/// What a room presence may add around its payload (which the joining node bounds by
/// `xmpp.room_presence_max_bytes`), at most, so that no occupant a node accepted is refused by
/// the others ([`Settings::room_presence_slack`]): `from='{room}@muc.{domain}/{nick}'` and the
/// MUC item's `jid='{user}-{app}@{domain}/{resource}'`, every character possibly
/// attribute-escaped: the room's local part (a standard room's name of up to `max_room_name`
/// characters; a dialog room's `{app}_{dialog}` is 44 at most), a nick and a resource of up to
/// [`MAX_RESOURCE`] bytes each, the domain twice; plus the fixed markup (the element and its
/// namespace, `type`, the `<x/>` and its namespace, the item's affiliation and role, two ids of
/// 19 digits), which 512 bytes cover.
pub fn room_presence_slack(domain: &str, max_room_name: usize) -> usize {
    let chars = max_room_name.max(44) + 2 * MAX_RESOURCE + 2 * domain.len();
    MAX_ATTR_CHAR * chars + 512
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Msg {
    Hello,
    Heartbeat,
    Leaving,
    /// A snapshot chunk; the `first` replaces everything known of the sender's sessions.
    Sessions {
        list: Vec<Sess>,
        first: bool,
    },
    Bound {
        s: Sess,
    },
    Unbound {
        app: i64,
        user: i64,
        resource: String,
    },
    Presence {
        app: i64,
        user: i64,
        resource: String,
        available: bool,
    },
    Stanza {
        app: i64,
        user: i64,
        to: Target,
        xml: String,
    },
    Notice {
        body: serde_json::Value,
    },
    UserNotice {
        app: i64,
        user: i64,
        body: serde_json::Value,
    },
    /// The sender now holds `user` in the room as `state` (nick, presence XML), or not at all
    /// (`None`); `show`: presences (XML) the other nodes show their own occupants, in order.
    Occupant {
        app: i64,
        dialog: String,
        user: i64,
        state: Option<(String, String)>,
        show: Vec<String>,
    },
    /// A snapshot chunk of the sender's room occupancy. From the `first` to the `last` (both
    /// may be one message) it replaces what was known. A sender that does not say `last` sends
    /// a snapshot whole in each message.
    Occupancy {
        list: Vec<Occ>,
        first: bool,
        #[serde(default = "yes")]
        last: bool,
    },
    /// A room stanza for these users of the receiving node.
    RoomStanza {
        app: i64,
        dialog: String,
        sender: i64,
        users: Vec<i64>,
        xml: String,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    inc: u64,
    msg: Msg,
}

struct Remote {
    node: Arc<str>,
    resource: String,
    available: bool,
}

struct Peer {
    name: Arc<str>,
    inc: u64,
    seen: Instant,
}

#[derive(Default)]
struct Directory {
    nodes: HashMap<Arc<str>, Peer>,
    sessions: HashMap<UserKey, Vec<Remote>>,
    count: usize,
}

impl Directory {
    /// Removes every session of `node`; returns them.
    fn drop_node(&mut self, node: &str) -> Vec<(UserKey, String, bool)> {
        let mut lost = Vec::new();
        self.sessions.retain(|user, list| {
            list.retain(|r| {
                if &*r.node == node {
                    lost.push((*user, r.resource.clone(), r.available));
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        self.count = self.count.saturating_sub(lost.len());
        lost
    }

    fn remove(&mut self, user: UserKey, node: &str, resource: &str) -> bool {
        let Some(list) = self.sessions.get_mut(&user) else {
            return false;
        };
        let before = list.len();
        list.retain(|r| !(&*r.node == node && r.resource == resource));
        let removed = list.len() < before;
        if list.is_empty() {
            self.sessions.remove(&user);
        }
        if removed {
            self.count = self.count.saturating_sub(1);
        }
        removed
    }
}

/// This node's membership of the cluster.
pub struct Cluster {
    settings: Settings,
    name: Arc<str>,
    inc: u64,
    bus: Arc<dyn Bus>,
    dir: Mutex<Directory>,
    local: OnceLock<Arc<dyn Local>>,
    /// The hub this node serves (set by [`Cluster::run`]): dead nodes' occupants leave its rooms.
    hub: OnceLock<std::sync::Weak<Hub>>,
}

/// A resource the cluster accepts: 1 to 1023 bytes, no control characters.
fn valid_resource(r: &str) -> bool {
    !r.is_empty() && r.len() <= MAX_RESOURCE && !r.chars().any(char::is_control)
}

fn valid_node(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A room key from the wire: a positive application id and a dialog id (lower-case hex).
fn room_key(app: i64, dialog: &str) -> Option<RoomKey> {
    (app > 0 && ObjectId::is_valid(dialog) && !dialog.bytes().any(|b| b.is_ascii_uppercase()))
        .then(|| (AppId(app), dialog.to_owned()))
}

/// A user key from the wire: both ids positive.
fn user_key(app: i64, user: i64) -> Option<UserKey> {
    (app > 0 && user > 0).then_some(UserKey {
        app: AppId(app),
        user: UserId(user),
    })
}

fn refused(why: &'static str) {
    metrics::counter!(QUEUE_DROPS, "queue" => "cluster_refused").increment(1);
    tracing::warn!(why, "cluster: bus message refused");
}

/// The length of `s` as the inside of a JSON string, as `serde_json` writes it: `"` and `\`
/// take two bytes, control characters two (`\n`, `\t`, ...) or six (`\u001f`), the rest as
/// in UTF-8.
fn json_str_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// A standalone stanza: `jabber:client` declared on the element itself.
const WIRE_SCOPE: Scope<'static> = Scope {
    default_ns: "",
    prefixed: None,
};

impl Cluster {
    /// A node named `settings.node` on `bus`. Start it with [`Cluster::run`] after
    /// [`Hub::join_cluster`] and [`Cluster::set_local`].
    pub fn new(settings: Settings, bus: Arc<dyn Bus>) -> Arc<Self> {
        let mut b = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        Arc::new(Self {
            name: settings.node.as_str().into(),
            settings,
            inc: u64::from_le_bytes(b),
            bus,
            dir: Mutex::new(Directory::default()),
            local: OnceLock::new(),
            hub: OnceLock::new(),
        })
    }

    pub fn set_local(&self, local: Arc<dyn Local>) {
        let _ = self.local.set(local);
    }

    pub fn node(&self) -> &str {
        &self.name
    }

    /// Whether the bus is connected (`/readyz` reports a degraded cluster when not).
    pub fn is_up(&self) -> bool {
        self.bus.is_up()
    }

    /// Other nodes alive now, by name (sorted).
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().nodes.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// Sessions of other nodes in the directory.
    pub fn remote_sessions(&self) -> usize {
        self.lock().count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, to: To<'_>, msg: Msg) -> bool {
        let env = Envelope {
            from: self.name.to_string(),
            inc: self.inc,
            msg,
        };
        let Ok(json) = serde_json::to_vec(&env) else {
            return false;
        };
        match self.bus.send(to, Bytes::from(json)) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: not sent");
                false
            }
        }
    }

    /// Publishes an opaque notice to every other node ([`Local::notice`] there).
    pub fn notify(&self, body: serde_json::Value) {
        self.send(To::All, Msg::Notice { body });
    }

    /// Publishes an opaque notice about `user` to the other nodes holding sessions of theirs
    /// other than `except` (one message per node; [`Local::user_notice`] there). Returns how
    /// many nodes it was sent to.
    pub fn notify_user(
        &self,
        user: UserKey,
        except: Option<&str>,
        body: serde_json::Value,
    ) -> usize {
        if !self.bus.is_up() {
            return 0;
        }
        let nodes: Vec<Arc<str>> = {
            let dir = self.lock();
            let mut nodes: Vec<Arc<str>> = Vec::new();
            for r in dir.sessions.get(&user).into_iter().flatten() {
                if except != Some(r.resource.as_str()) && !nodes.contains(&r.node) {
                    nodes.push(r.node.clone());
                }
            }
            nodes
        };
        nodes
            .iter()
            .filter(|n| {
                let msg = Msg::UserNotice {
                    app: user.app.0,
                    user: user.user.0,
                    body: body.clone(),
                };
                self.send(To::Node(n), msg)
            })
            .count()
    }

    // ---- announcements of this node's sessions ----

    pub(super) fn bound(&self, user: UserKey, resource: &str) {
        // A session of this node now holds the resource: any remote holder is being replaced.
        let owners: Vec<Arc<str>> = self
            .lock()
            .sessions
            .get(&user)
            .map(|l| {
                l.iter()
                    .filter(|r| r.resource == resource)
                    .map(|r| r.node.clone())
                    .collect()
            })
            .unwrap_or_default();
        for n in owners {
            self.lock().remove(user, &n, resource);
        }
        self.send(
            To::All,
            Msg::Bound {
                s: Sess {
                    app: user.app.0,
                    user: user.user.0,
                    resource: resource.to_owned(),
                    available: false,
                },
            },
        );
    }

    pub(super) fn unbound(&self, user: UserKey, resource: &str) {
        self.send(
            To::All,
            Msg::Unbound {
                app: user.app.0,
                user: user.user.0,
                resource: resource.to_owned(),
            },
        );
    }

    pub(super) fn presence(&self, user: UserKey, resource: &str, available: bool) {
        self.send(
            To::All,
            Msg::Presence {
                app: user.app.0,
                user: user.user.0,
                resource: resource.to_owned(),
                available,
            },
        );
    }

    // ---- lookups and delivery to other nodes ----

    /// Whether `user` has a session on another reachable node.
    pub fn is_online(&self, user: UserKey) -> bool {
        self.bus.is_up() && self.lock().sessions.contains_key(&user)
    }

    /// `user`'s sessions on other reachable nodes: (resource, available).
    pub fn resources(&self, user: UserKey) -> Vec<(String, bool)> {
        if !self.bus.is_up() {
            return Vec::new();
        }
        self.lock()
            .sessions
            .get(&user)
            .map(|l| {
                l.iter()
                    .map(|r| (r.resource.clone(), r.available))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Users of `app` with a session on another reachable node.
    pub fn online_users(&self, app: AppId) -> Vec<i64> {
        if !self.bus.is_up() {
            return Vec::new();
        }
        self.lock()
            .sessions
            .keys()
            .filter(|k| k.app == app)
            .map(|k| k.user.0)
            .collect()
    }

    /// Sends `stanza` to the nodes holding sessions of `user` (one message per node); returns
    /// how many remote sessions it was sent towards.
    fn to_nodes(&self, user: UserKey, to: &Target, stanza: &Element) -> usize {
        if !self.bus.is_up() {
            return 0;
        }
        let mut nodes: Vec<(Arc<str>, usize)> = Vec::new();
        {
            let dir = self.lock();
            let Some(list) = dir.sessions.get(&user) else {
                return 0;
            };
            for r in list {
                if let Target::Resource { r: want } = to {
                    if &r.resource != want {
                        continue;
                    }
                }
                match nodes.iter_mut().find(|(n, _)| *n == r.node) {
                    Some((_, c)) => *c += 1,
                    None => nodes.push((r.node.clone(), 1)),
                }
            }
        }
        if nodes.is_empty() {
            return 0;
        }
        let xml = stanza.to_xml(WIRE_SCOPE);
        let mut sent = 0;
        for (node, sessions) in nodes {
            let msg = Msg::Stanza {
                app: user.app.0,
                user: user.user.0,
                to: to.clone(),
                xml: xml.clone(),
            };
            if self.send(To::Node(&node), msg) {
                sent += sessions;
            }
        }
        sent
    }

    pub(super) fn deliver_to_user(&self, user: UserKey, stanza: &Element) -> usize {
        self.to_nodes(user, &Target::User, stanza)
    }

    pub(super) fn deliver_to_resource(&self, user: UserKey, r: &str, stanza: &Element) -> bool {
        self.to_nodes(user, &Target::Resource { r: r.to_owned() }, stanza) > 0
    }

    pub(super) fn deliver_addressed(&self, user: UserKey, bare: &str, stanza: &Element) -> usize {
        self.to_nodes(
            user,
            &Target::Addressed {
                bare: bare.to_owned(),
            },
            stanza,
        )
    }

    // ---- the node's loop ----

    /// Handles the bus until `shutdown`: incoming messages, heartbeats, dead nodes. Says
    /// `hello` first, and `leaving` last.
    pub async fn run(
        self: Arc<Self>,
        hub: Arc<Hub>,
        mut inbox: mpsc::Receiver<Bytes>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _ = self.hub.set(Arc::downgrade(&hub));
        let mut said_hello = self.send(To::All, Msg::Hello);
        let mut was_up = self.bus.is_up();
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = inbox.recv() => match m {
                    Some(b) => self.handle(&hub, &b),
                    None => return,
                },
                _ = tick.tick() => {
                    let up = self.bus.is_up();
                    if !said_hello || (up && !was_up) {
                        // First contact, or back after an outage: announcements sent meanwhile
                        // were lost, so everyone (us included) sends a fresh snapshot.
                        said_hello = self.send(To::All, Msg::Hello);
                        if said_hello {
                            self.send_snapshot(&hub);
                        }
                    }
                    was_up = up;
                    self.send(To::All, Msg::Heartbeat);
                    self.sweep();
                }
                _ = shutdown.changed() => {
                    self.send(To::All, Msg::Leaving);
                    return;
                }
            }
        }
    }

    /// Declares dead the nodes not heard from for `node_timeout`.
    fn sweep(&self) {
        let timeout = self.settings.node_timeout;
        let mut lost = Vec::new();
        let mut gone = Vec::new();
        {
            let mut dir = self.lock();
            let dead: Vec<Arc<str>> = dir
                .nodes
                .values()
                .filter(|p| p.seen.elapsed() > timeout)
                .map(|p| p.name.clone())
                .collect();
            for n in dead {
                tracing::warn!(node = %n, "cluster: node timed out; its users are offline");
                dir.nodes.remove(&n);
                lost.extend(dir.drop_node(&n));
                gone.push(n);
            }
        }
        self.tell_lost(lost);
        for n in gone {
            self.rooms_gone(&n);
        }
    }

    /// `node`'s occupants leave every room here (it died, left or restarted).
    fn rooms_gone(&self, node: &str) {
        let Some(hub) = self.hub.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let gone = hub.rooms.drop_remote_node(node);
        if let (false, Some(l)) = (gone.is_empty(), self.local.get()) {
            l.rooms_lost(gone);
        }
    }

    fn tell_lost(&self, lost: Vec<(UserKey, String, bool)>) {
        if lost.is_empty() {
            return;
        }
        if let Some(l) = self.local.get() {
            l.lost(lost);
        }
    }

    /// Handles one payload from the bus.
    pub(super) fn handle(&self, hub: &Hub, payload: &[u8]) {
        if payload.len() > self.settings.max_message_bytes {
            return refused("oversize");
        }
        let Ok(env) = serde_json::from_slice::<Envelope>(payload) else {
            return refused("unreadable envelope");
        };
        if !valid_node(&env.from) {
            return refused("bad node name");
        }
        if *env.from == *self.name {
            // Our own name from another process: a misconfiguration, never our echo (no_echo).
            if env.inc != self.inc {
                tracing::error!(node = %env.from, "cluster: another node uses this node's name");
            }
            return;
        }
        let from = match self.seen(&env.from, env.inc, &env.msg) {
            Some(n) => n,
            None => return,
        };
        match env.msg {
            Msg::Hello => self.send_snapshot(hub),
            Msg::Heartbeat => {}
            Msg::Leaving => {
                let lost = {
                    let mut dir = self.lock();
                    dir.nodes.remove(&from);
                    dir.drop_node(&from)
                };
                self.tell_lost(lost);
                self.rooms_gone(&from);
            }
            Msg::Sessions { list, first } => {
                if first {
                    // Whatever we knew of the sender is superseded (announcements lost while
                    // the bus was down included). Silently: the sessions that are still there
                    // come back in this snapshot.
                    self.lock().drop_node(&from);
                }
                for s in list {
                    self.add(&from, s);
                }
            }
            Msg::Bound { s } => {
                if let Some(user) = user_key(s.app, s.user).filter(|_| valid_resource(&s.resource))
                {
                    // The newer stream wins, across nodes as on one.
                    hub.replace_local(user, &s.resource);
                }
                self.add(&from, s);
            }
            Msg::Unbound {
                app,
                user,
                resource,
            } => {
                if let Some(u) = user_key(app, user) {
                    self.lock().remove(u, &from, &resource);
                }
            }
            Msg::Presence {
                app,
                user,
                resource,
                available,
            } => {
                if let Some(u) = user_key(app, user) {
                    let mut dir = self.lock();
                    if let Some(r) = dir.sessions.get_mut(&u).and_then(|l| {
                        l.iter_mut()
                            .find(|r| *r.node == *from && r.resource == resource)
                    }) {
                        r.available = available;
                    }
                }
            }
            Msg::Stanza { app, user, to, xml } => self.stanza(hub, app, user, to, &xml),
            Msg::Notice { body } => {
                if let Some(l) = self.local.get() {
                    l.notice(body);
                }
            }
            Msg::UserNotice { app, user, body } => match user_key(app, user) {
                Some(u) => {
                    if let Some(l) = self.local.get() {
                        l.user_notice(u, body);
                    }
                }
                None => refused("bad user id"),
            },
            Msg::Occupant {
                app,
                dialog,
                user,
                state,
                show,
            } => self.occupant(hub, &from, app, &dialog, user, state, show),
            Msg::Occupancy { list, first, last } => self.occupancy(hub, &from, list, first, last),
            Msg::RoomStanza {
                app,
                dialog,
                sender,
                users,
                xml,
            } => self.room_stanza_here(app, &dialog, sender, users, &xml),
        }
    }

    /// A snapshot chunk of `node`'s occupancy. From the first chunk to the last it replaces
    /// what was known of it: this node's occupants see arrive those not known before and, at
    /// the last chunk, leave those no longer held (announcements lost while the bus was down),
    /// as if they had been told at the time. What was known stays until the last chunk (stale,
    /// see [`super::rooms::Rooms::mark_remote_stale`]), so the occupants of a later chunk are
    /// not shown leaving and coming back.
    fn occupancy(&self, hub: &Hub, node: &Arc<str>, list: Vec<Occ>, first: bool, last: bool) {
        if first {
            hub.rooms.mark_remote_stale(node);
        }
        let mut arrived = Vec::new();
        for o in list {
            let Some(k) = room_key(o.app, &o.dialog) else {
                refused("bad room");
                continue;
            };
            let known = hub.rooms.nick_of(&k, o.user).is_some();
            let Some(p) = self.hold(hub, node, &k, o.user, o.nick, &o.presence) else {
                continue;
            };
            if !known {
                arrived.push((k, o.user, p));
            }
        }
        let gone = if last {
            hub.rooms.drop_stale_remote(node)
        } else {
            Vec::new()
        };
        let Some(l) = self.local.get() else {
            return;
        };
        if !gone.is_empty() {
            l.rooms_lost(gone);
        }
        for (k, user, p) in arrived {
            l.room_show(k, user, vec![p]);
        }
    }

    /// Records that `node` holds `user` in room `k`: the presence recorded, `None` when refused.
    fn hold(
        &self,
        hub: &Hub,
        node: &Arc<str>,
        k: &RoomKey,
        user: i64,
        nick: String,
        presence: &str,
    ) -> Option<Element> {
        if user <= 0 {
            refused("bad user id");
            return None;
        }
        if !valid_resource(&nick) {
            refused("bad nick");
            return None;
        }
        let max = self.settings.max_room_presence_bytes + self.settings.room_presence_slack;
        if presence.len() > max {
            refused("room presence too large");
            return None;
        }
        let p = self.parse_as(presence, "presence")?;
        let max = self.settings.max_remote_occupants;
        if !hub.rooms.set_remote(node, k, user, nick, p.clone(), max) {
            refused("rooms full (cluster.max_remote_occupants)");
            return None;
        }
        Some(p)
    }

    /// Parses a stanza from the bus; `None` (counted) unless it is a `jabber:client` `name`.
    fn parse_as(&self, xml: &str, name: &str) -> Option<Element> {
        let local = self.local.get()?;
        let Some(el) = local.parse(xml.as_bytes()) else {
            refused("stanza does not parse");
            return None;
        };
        if el.name != name || el.ns != "jabber:client" {
            refused("not the expected stanza");
            return None;
        }
        Some(el)
    }

    /// Another node's occupant changed: the room's state here follows, and this node's
    /// occupants are shown what that node's were.
    #[allow(clippy::too_many_arguments)]
    fn occupant(
        &self,
        hub: &Hub,
        from: &Arc<str>,
        app: i64,
        dialog: &str,
        user: i64,
        state: Option<(String, String)>,
        show: Vec<String>,
    ) {
        let Some(k) = room_key(app, dialog) else {
            return refused("bad room");
        };
        if user <= 0 {
            return refused("bad user id");
        }
        if show.len() > MAX_SHOWN {
            return refused("too many presences");
        }
        match state {
            Some((nick, presence)) => {
                if self.hold(hub, from, &k, user, nick, &presence).is_none() {
                    return;
                }
            }
            None => {
                hub.rooms.remove_remote(from, &k, user);
            }
        }
        let shown: Vec<Element> = show
            .iter()
            .filter_map(|x| self.parse_as(x, "presence"))
            .collect();
        if let (false, Some(l)) = (shown.is_empty(), self.local.get()) {
            l.room_show(k, user, shown);
        }
    }

    /// A room stanza for some of this node's users.
    fn room_stanza_here(&self, app: i64, dialog: &str, sender: i64, users: Vec<i64>, xml: &str) {
        if room_key(app, dialog).is_none() || sender <= 0 || users.iter().any(|u| *u <= 0) {
            return refused("bad room stanza");
        }
        let Some(el) = self.parse_as(xml, "message") else {
            return;
        };
        if let Some(l) = self.local.get() {
            l.room_stanza(AppId(app), sender, users, el);
        }
    }

    // ---- rooms across nodes ----

    /// Tells the other nodes what this node now holds of `user` in room `k` (`state`: nick
    /// and room presence; `None`: no joined connection here any more), and the presences
    /// (from the room, no `to`) their occupants are shown, in order.
    pub fn room_occupant(
        &self,
        k: &RoomKey,
        user: i64,
        state: Option<(&str, &Element)>,
        show: &[Element],
    ) {
        let msg = Msg::Occupant {
            app: k.0 .0,
            dialog: k.1.clone(),
            user,
            state: state.map(|(n, p)| (n.to_owned(), p.to_xml(WIRE_SCOPE))),
            show: show.iter().map(|p| p.to_xml(WIRE_SCOPE)).collect(),
        };
        if self.send(To::All, msg) {
            metrics::counter!(CLUSTER_ROOM_MESSAGES, "kind" => "occupant").increment(1);
        }
    }

    /// Sends a room stanza to the other nodes holding sessions of `users`: one message per node
    /// (more only when its recipients' ids overflow `max_message_bytes`). Returns the messages
    /// sent.
    pub fn room_stanza(
        &self,
        app: AppId,
        dialog: &str,
        sender: i64,
        users: &[i64],
        stanza: &Element,
    ) -> usize {
        if !self.bus.is_up() {
            return 0;
        }
        let mut by_node: Vec<(Arc<str>, Vec<i64>)> = Vec::new();
        {
            let dir = self.lock();
            for uid in users {
                let key = UserKey {
                    app,
                    user: UserId(*uid),
                };
                for r in dir.sessions.get(&key).into_iter().flatten() {
                    match by_node.iter_mut().find(|(n, _)| *n == r.node) {
                        Some((_, l)) if l.last() == Some(uid) => {}
                        Some((_, l)) => l.push(*uid),
                        None => by_node.push((r.node.clone(), vec![*uid])),
                    }
                }
            }
        }
        if by_node.is_empty() {
            return 0;
        }
        let xml = stanza.to_xml(WIRE_SCOPE);
        // The stanza travels as a JSON string, longer than the XML when the text holds quotes,
        // backslashes or newlines (the XML writer leaves them as they are in text). An id is at
        // most 20 digits and a comma; the rest of the envelope well under 512 bytes.
        let room = self
            .settings
            .max_message_bytes
            .saturating_sub(json_str_len(&xml) + 512)
            / 21;
        if room == 0 {
            refused("room stanza too large for the bus");
            return 0;
        }
        let mut sent = 0;
        for (node, list) in by_node {
            for chunk in list.chunks(room) {
                let msg = Msg::RoomStanza {
                    app: app.0,
                    dialog: dialog.to_owned(),
                    sender,
                    users: chunk.to_vec(),
                    xml: xml.clone(),
                };
                if self.send(To::Node(&node), msg) {
                    sent += 1;
                    metrics::counter!(CLUSTER_ROOM_MESSAGES, "kind" => "stanza").increment(1);
                }
            }
        }
        sent
    }

    /// Sends this node's room occupancy (on the `All` subject, after the sessions), in chunks.
    fn send_occupancy(&self, hub: &Hub) {
        let budget = self.settings.max_message_bytes.saturating_sub(256) / 2;
        let mut chunk = Vec::new();
        let (mut size, mut first) = (0, true);
        let flush = |chunk: &mut Vec<Occ>, first: &mut bool, last: bool| {
            let list = std::mem::take(chunk);
            if self.send(
                To::All,
                Msg::Occupancy {
                    list,
                    first: *first,
                    last,
                },
            ) {
                metrics::counter!(CLUSTER_ROOM_MESSAGES, "kind" => "occupancy").increment(1);
            }
            *first = false;
        };
        for ((app, dialog), user, nick, presence) in hub.rooms.local_occupancy() {
            let presence = presence.to_xml(WIRE_SCOPE);
            // JSON may double what it quotes (escapes), plus the fields' names.
            let len = (presence.len() + nick.len()) * 2 + 120;
            if len > budget {
                refused("an occupant too large for the bus");
                continue;
            }
            if size + len > budget && !chunk.is_empty() {
                flush(&mut chunk, &mut first, false);
                size = 0;
            }
            size += len;
            chunk.push(Occ {
                app: app.0,
                dialog,
                user,
                nick,
                presence,
            });
        }
        // Always: the last chunk (empty, when there is nothing, or nothing after the previous
        // one) ends the snapshot on the other nodes.
        flush(&mut chunk, &mut first, true);
    }

    /// Records that `node` (incarnation `inc`) was heard from; `None` when it cannot be
    /// tracked. A node not known yet is asked for its sessions; a node that restarted loses
    /// its earlier sessions.
    fn seen(&self, node: &str, inc: u64, msg: &Msg) -> Option<Arc<str>> {
        let mut lost = Vec::new();
        let mut ask = false;
        let mut restarted = false;
        let name = {
            let mut dir = self.lock();
            let full = dir.nodes.len() >= self.settings.max_nodes;
            match dir.nodes.get_mut(node) {
                Some(p) if p.inc == inc => {
                    p.seen = Instant::now();
                    p.name.clone()
                }
                Some(p) => {
                    tracing::info!(node, "cluster: node restarted");
                    p.inc = inc;
                    p.seen = Instant::now();
                    let name = p.name.clone();
                    lost = dir.drop_node(&name);
                    restarted = true;
                    ask = !matches!(msg, Msg::Hello);
                    name
                }
                None if full => {
                    drop(dir);
                    refused("too many nodes");
                    return None;
                }
                None => {
                    let name: Arc<str> = node.into();
                    tracing::info!(node, "cluster: node joined");
                    dir.nodes.insert(
                        name.clone(),
                        Peer {
                            name: name.clone(),
                            inc,
                            seen: Instant::now(),
                        },
                    );
                    // Met by any message but its hello (which asks us, not the reverse), and
                    // not by its goodbye: ask for what it holds.
                    ask = !matches!(msg, Msg::Hello | Msg::Leaving | Msg::Sessions { .. });
                    name
                }
            }
        };
        self.tell_lost(lost);
        if restarted {
            self.rooms_gone(&name);
        }
        if ask {
            self.send(To::Node(&name), Msg::Hello);
        }
        Some(name)
    }

    fn add(&self, node: &Arc<str>, s: Sess) {
        let Some(user) = user_key(s.app, s.user) else {
            return refused("bad user id");
        };
        if !valid_resource(&s.resource) {
            return refused("bad resource");
        }
        let mut dir = self.lock();
        let existing = dir
            .sessions
            .get_mut(&user)
            .and_then(|l| l.iter_mut().find(|r| r.resource == s.resource));
        if let Some(r) = existing {
            // One holder of a resource in the cluster: the latest announcement.
            r.node = node.clone();
            r.available = s.available;
            return;
        }
        if dir.count >= self.settings.max_remote_sessions {
            drop(dir);
            return refused("directory full (cluster.max_remote_sessions)");
        }
        dir.count += 1;
        dir.sessions.entry(user).or_default().push(Remote {
            node: node.clone(),
            resource: s.resource,
            available: s.available,
        });
    }

    /// Sends this node's sessions (on the `All` subject, in order with its announcements; see
    /// the module header), in chunks that fit a bus message.
    fn send_snapshot(&self, hub: &Hub) {
        let all = hub.local_sessions();
        // An entry's JSON is its resource plus ~60 bytes; keep a chunk well under the bound.
        let budget = self.settings.max_message_bytes.saturating_sub(256) / 2;
        let mut chunk = Vec::new();
        let (mut size, mut first) = (0, true);
        for (user, resource, available) in all {
            let len = resource.len() * 2 + 80;
            if size + len > budget && !chunk.is_empty() {
                self.send(
                    To::All,
                    Msg::Sessions {
                        list: std::mem::take(&mut chunk),
                        first,
                    },
                );
                first = false;
                size = 0;
            }
            size += len;
            chunk.push(Sess {
                app: user.app.0,
                user: user.user.0,
                resource,
                available,
            });
        }
        if !chunk.is_empty() || first {
            self.send(To::All, Msg::Sessions { list: chunk, first });
        }
        self.send_occupancy(hub);
    }

    /// A stanza for a user of this node.
    fn stanza(&self, hub: &Hub, app: i64, user: i64, to: Target, xml: &str) {
        let Some(user) = user_key(app, user) else {
            return refused("bad user id");
        };
        let Some(local) = self.local.get() else {
            return;
        };
        let Some(el) = local.parse(xml.as_bytes()) else {
            return refused("stanza does not parse");
        };
        if !matches!(el.name.as_str(), "message" | "presence" | "iq") || el.ns != "jabber:client" {
            return refused("not a stanza");
        }
        let delivered = match &to {
            Target::User => hub.local_deliver_to_user(user, &el),
            Target::Resource { r } => {
                usize::from(hub.local_deliver_to_resource(user, r, el.clone()))
            }
            Target::Addressed { bare } => hub.local_deliver_addressed(user, bare, &el),
        };
        if delivered == 0 {
            local.undelivered(user, el);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_reads_back_as_written() {
        let env = Envelope {
            from: "a".into(),
            inc: 7,
            msg: Msg::Stanza {
                app: 1,
                user: 2,
                to: Target::Resource { r: "phone".into() },
                xml: "<message xmlns='jabber:client'/>".into(),
            },
        };
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert!(matches!(
            back.msg,
            Msg::Stanza { app: 1, user: 2, to: Target::Resource { ref r }, .. } if r == "phone"
        ));
    }

    /// The user notices (`Msg::UserNotice`) in what `inbox` holds now.
    fn user_notices(inbox: &mut mpsc::Receiver<Bytes>) -> usize {
        let mut n = 0;
        while let Ok(b) = inbox.try_recv() {
            let env: Envelope = serde_json::from_slice(&b).unwrap();
            n += usize::from(matches!(env.msg, Msg::UserNotice { .. }));
        }
        n
    }

    #[test]
    fn a_user_notice_goes_once_to_each_node_holding_the_user_and_not_to_an_excepted_resource() {
        use crate::hub::bus::{local::LocalNet, Limits};
        let limits = Limits {
            max_message_bytes: 65536,
            send_queue: 64,
            receive_queue: 64,
        };
        let net = LocalNet::new();
        let a = net.attach("a", limits);
        let mut b = net.attach("b", limits);
        let mut c = net.attach("c", limits);
        let mut d = net.attach("d", limits);
        let cluster = Cluster::new(
            Settings {
                node: "a".into(),
                heartbeat: Duration::from_secs(1),
                node_timeout: Duration::from_secs(3),
                max_message_bytes: limits.max_message_bytes,
                max_remote_sessions: 100,
                max_nodes: 8,
                max_remote_occupants: 100,
                max_room_presence_bytes: 4096,
                room_presence_slack: room_presence_slack("localhost", 1000),
            },
            a.bus.clone(),
        );
        let hub = Hub::new();
        let bound = |node: &str, user: i64, resource: &str| {
            let env = Envelope {
                from: node.into(),
                inc: 1,
                msg: Msg::Bound {
                    s: Sess {
                        app: 1,
                        user,
                        resource: resource.into(),
                        available: true,
                    },
                },
            };
            cluster.handle(&hub, &serde_json::to_vec(&env).unwrap());
        };
        bound("b", 7, "phone");
        bound("b", 7, "tab");
        bound("c", 7, "desk");
        bound("d", 8, "other-user");
        let user = user_key(1, 7).unwrap();
        let body = serde_json::json!({"notice": "test"});
        assert_eq!(cluster.notify_user(user, None, body.clone()), 2);
        assert_eq!(
            user_notices(&mut b.inbox),
            1,
            "once per node, not per session"
        );
        assert_eq!(user_notices(&mut c.inbox), 1);
        assert_eq!(
            user_notices(&mut d.inbox),
            0,
            "holds no session of the user"
        );
        // The resource that took the message is the only one of the user on node c.
        assert_eq!(cluster.notify_user(user, Some("desk"), body), 1);
        assert_eq!(user_notices(&mut b.inbox), 1);
        assert_eq!(user_notices(&mut c.inbox), 0);
    }

    /// An adapter that reads every stanza as an empty presence and ignores the rest.
    struct Stub;

    impl Local for Stub {
        fn parse(&self, _: &[u8]) -> Option<Element> {
            Some(Element::new("presence", "jabber:client"))
        }
        fn undelivered(&self, _: UserKey, _: Element) {}
        fn lost(&self, _: Vec<(UserKey, String, bool)>) {}
        fn notice(&self, _: serde_json::Value) {}
    }

    const DIALOG: &str = "5c094c0ce588ce6856f87422";

    fn occupant(dialog: &str, user: i64, nick: &str) -> Vec<u8> {
        let env = Envelope {
            from: "b".into(),
            inc: 1,
            msg: Msg::Occupant {
                app: 1,
                dialog: dialog.into(),
                user,
                state: Some((nick.into(), "<presence xmlns='jabber:client'/>".into())),
                show: Vec::new(),
            },
        };
        serde_json::to_vec(&env).unwrap()
    }

    /// Node "a" alone on an in-process bus (kept alive by the caller), with these room bounds.
    fn node_a(
        max_remote_occupants: usize,
        max_room_presence_bytes: usize,
    ) -> (super::super::bus::local::LocalNet, Arc<Cluster>) {
        let net = super::super::bus::local::LocalNet::new();
        let limits = super::super::bus::Limits {
            max_message_bytes: 65536,
            send_queue: 8,
            receive_queue: 8,
        };
        let settings = Settings {
            node: "a".into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            max_message_bytes: limits.max_message_bytes,
            max_remote_sessions: 10,
            max_nodes: 4,
            max_remote_occupants,
            max_room_presence_bytes,
            room_presence_slack: room_presence_slack("localhost", 1000),
        };
        let c = Cluster::new(settings, net.attach("a", limits).bus);
        (net, c)
    }

    #[tokio::test]
    async fn another_nodes_occupants_are_checked_bounded_and_go_with_their_node() {
        let (_net, c) = node_a(1, 64);
        c.set_local(Arc::new(Stub));
        let hub = Arc::new(Hub::new());
        let _ = c.hub.set(Arc::downgrade(&hub));
        for bad in [
            occupant("not-a-dialog", 8, "bob"),
            occupant(DIALOG, 0, "bob"),
            occupant(DIALOG, 8, ""),
            occupant(DIALOG, 8, "a\u{0}b"),
        ] {
            c.handle(&hub, &bad);
        }
        // A presence beyond the room's bound (checked before parsing).
        let big = Envelope {
            from: "b".into(),
            inc: 1,
            msg: Msg::Occupant {
                app: 1,
                dialog: DIALOG.into(),
                user: 8,
                state: Some((
                    "bob".into(),
                    "x".repeat(64 + room_presence_slack("localhost", 1000) + 1),
                )),
                show: Vec::new(),
            },
        };
        c.handle(&hub, &serde_json::to_vec(&big).unwrap());
        assert_eq!(hub.rooms.remote_count(), 0);
        c.handle(&hub, &occupant(DIALOG, 8, "bob"));
        c.handle(&hub, &occupant(DIALOG, 9, "carol"));
        assert_eq!(hub.rooms.remote_count(), 1, "cluster.max_remote_occupants");
        let leaving = Envelope {
            from: "b".into(),
            inc: 1,
            msg: Msg::Leaving,
        };
        c.handle(&hub, &serde_json::to_vec(&leaving).unwrap());
        assert_eq!(hub.rooms.remote_count(), 0);
    }

    #[tokio::test]
    async fn an_occupant_at_every_bound_of_its_room_presence_is_held_by_the_other_nodes() {
        let (_net, c) = node_a(10, 4096);
        c.set_local(Arc::new(Stub));
        let hub = Hub::new();
        // The longest room name, nick and resource, each of characters written escaped.
        let name = "'".repeat(1000);
        let nick = "'".repeat(MAX_RESOURCE);
        let resource = "\"".repeat(MAX_RESOURCE);
        let status = |n: usize| Element::new("status", "jabber:client").with_text("s".repeat(n));
        let overhead = status(0).to_xml(WIRE_SCOPE).len();
        let item = Element::new("item", "http://jabber.org/protocol/muc#user")
            .with_attr("affiliation", "owner")
            .with_attr("role", "moderator")
            .with_attr(
                "jid",
                format!("{}-{}@localhost/{resource}", i64::MAX, i64::MAX),
            );
        let presence = Element::new("presence", "jabber:client")
            .with_attr("from", format!("{name}@muc.localhost/{nick}"))
            .with_child(status(4096 - overhead))
            .with_child(Element::new("x", "http://jabber.org/protocol/muc#user").with_child(item))
            .to_xml(WIRE_SCOPE);
        let env = Envelope {
            from: "b".into(),
            inc: 1,
            msg: Msg::Occupant {
                app: 1,
                dialog: DIALOG.into(),
                user: 8,
                state: Some((nick, presence)),
                show: Vec::new(),
            },
        };
        c.handle(&hub, &serde_json::to_vec(&env).unwrap());
        assert_eq!(hub.rooms.remote_count(), 1);
    }

    /// [`Stub`], noting which occupants it was told arrived or left.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Local for Recorder {
        fn parse(&self, xml: &[u8]) -> Option<Element> {
            Stub.parse(xml)
        }
        fn undelivered(&self, _: UserKey, _: Element) {}
        fn lost(&self, _: Vec<(UserKey, String, bool)>) {}
        fn notice(&self, _: serde_json::Value) {}
        fn room_show(&self, _: RoomKey, user: i64, _: Vec<Element>) {
            self.0.lock().unwrap().push(format!("+{user}"));
        }
        fn rooms_lost(&self, gone: Vec<(RoomKey, Occupant)>) {
            for (_, o) in gone {
                self.0.lock().unwrap().push(format!("-{}", o.user));
            }
        }
    }

    #[tokio::test]
    async fn a_snapshot_shows_the_occupants_that_came_and_went_while_announcements_were_lost() {
        let (_net, c) = node_a(10, 4096);
        let seen = Arc::new(Recorder::default());
        c.set_local(seen.clone());
        let hub = Hub::new();
        // Node b holds users 8 and 9 in the room.
        c.handle(&hub, &occupant(DIALOG, 8, "bob"));
        c.handle(&hub, &occupant(DIALOG, 9, "carol"));
        // Its snapshot after an outage: 9 stayed, 8 left and 10 came meanwhile.
        let occ = |user: i64, nick: &str| Occ {
            app: 1,
            dialog: DIALOG.into(),
            user,
            nick: nick.into(),
            presence: "<presence xmlns='jabber:client'/>".into(),
        };
        let snapshot = Envelope {
            from: "b".into(),
            inc: 1,
            msg: Msg::Occupancy {
                list: vec![occ(9, "carol"), occ(10, "dave")],
                first: true,
                last: true,
            },
        };
        c.handle(&hub, &serde_json::to_vec(&snapshot).unwrap());
        let key = (AppId(1), DIALOG.to_owned());
        assert_eq!(hub.rooms.joined_users(&key), vec![9, 10]);
        let mut told = seen.0.lock().unwrap().clone();
        told.sort();
        assert_eq!(told, vec!["+10", "-8"]);
    }

    #[test]
    fn a_strings_json_length_is_counted_as_serde_json_writes_it() {
        for s in [
            "",
            "plain",
            "\"quoted\"",
            "a\\b",
            "l1\nl2\r\t\u{8}\u{c}",
            "\u{1}\u{1f}",
            "é€😀",
        ] {
            assert_eq!(
                json_str_len(s) + 2,
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_room_stanza_whose_text_grows_in_json_still_reaches_every_recipient_within_the_bound() {
        use crate::hub::bus::{local::LocalNet, Limits};
        let limits = Limits {
            max_message_bytes: 4096,
            send_queue: 64,
            receive_queue: 64,
        };
        let net = LocalNet::new();
        let a = net.attach("a", limits);
        let mut b = net.attach("b", limits);
        let c = Cluster::new(
            Settings {
                node: "a".into(),
                heartbeat: Duration::from_secs(1),
                node_timeout: Duration::from_secs(3),
                max_message_bytes: limits.max_message_bytes,
                max_remote_sessions: 1000,
                max_nodes: 4,
                max_remote_occupants: 100,
                max_room_presence_bytes: 4096,
                room_presence_slack: room_presence_slack("localhost", 1000),
            },
            a.bus.clone(),
        );
        let hub = Hub::new();
        // Ids of 19 digits, so that the recipients' list weighs on the message's size.
        let users: Vec<i64> = (0..150).map(|i| 1_000_000_000_000_000_000 + i).collect();
        for u in &users {
            let env = Envelope {
                from: "b".into(),
                inc: 1,
                msg: Msg::Bound {
                    s: Sess {
                        app: 1,
                        user: *u,
                        resource: "phone".into(),
                        available: true,
                    },
                },
            };
            c.handle(&hub, &serde_json::to_vec(&env).unwrap());
        }
        // Quotes, tabs and newlines: one byte each in the XML's text, two in JSON.
        let body = "\"\n\t".repeat(400);
        let stanza = Element::new("message", "jabber:client")
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", "jabber:client").with_text(body));
        let sent = c.room_stanza(AppId(1), DIALOG, 5, &users, &stanza);
        let mut got = Vec::new();
        let mut messages = 0;
        while let Ok(p) = b.inbox.try_recv() {
            assert!(p.len() <= limits.max_message_bytes);
            let env: Envelope = serde_json::from_slice(&p).unwrap();
            if let Msg::RoomStanza { users, .. } = env.msg {
                messages += 1;
                got.extend(users);
            }
        }
        assert_eq!(sent, messages);
        got.sort_unstable();
        assert_eq!(
            got, users,
            "every recipient, none lost to an oversize message"
        );
    }

    #[tokio::test]
    async fn a_snapshot_in_several_messages_shows_only_who_came_and_went_once_it_ends() {
        let (_net, c) = node_a(10, 4096);
        let seen = Arc::new(Recorder::default());
        c.set_local(seen.clone());
        let hub = Hub::new();
        // Node b holds users 8, 9 and 10 in the room.
        for (user, nick) in [(8, "bob"), (9, "carol"), (10, "dave")] {
            c.handle(&hub, &occupant(DIALOG, user, nick));
        }
        let occ = |user: i64, nick: &str| Occ {
            app: 1,
            dialog: DIALOG.into(),
            user,
            nick: nick.into(),
            presence: "<presence xmlns='jabber:client'/>".into(),
        };
        let chunk = |list: Vec<Occ>, first: bool, last: bool| {
            let env = Envelope {
                from: "b".into(),
                inc: 1,
                msg: Msg::Occupancy { list, first, last },
            };
            serde_json::to_vec(&env).unwrap()
        };
        let key = (AppId(1), DIALOG.to_owned());
        // Its snapshot in three messages: 9 stayed, 10 too (in a later message), 8 left and 11
        // came meanwhile.
        c.handle(&hub, &chunk(vec![occ(9, "carol")], true, false));
        c.handle(&hub, &chunk(vec![occ(10, "dave")], false, false));
        assert_eq!(hub.rooms.joined_users(&key), vec![8, 9, 10]);
        assert!(seen.0.lock().unwrap().is_empty(), "no one left or came yet");
        c.handle(&hub, &chunk(vec![occ(11, "erin")], false, true));
        assert_eq!(hub.rooms.joined_users(&key), vec![9, 10, 11]);
        let mut told = seen.0.lock().unwrap().clone();
        told.sort();
        assert_eq!(told, vec!["+11", "-8"]);
    }

    #[test]
    fn an_occupancy_message_that_does_not_say_last_is_a_whole_snapshot() {
        let json = r#"{"from":"b","inc":1,"msg":{"t":"occupancy","list":[],"first":true}}"#;
        let env: Envelope = serde_json::from_str(json).unwrap();
        assert!(matches!(env.msg, Msg::Occupancy { last: true, .. }));
    }

    #[test]
    fn ids_and_names_from_the_bus_are_checked() {
        assert!(user_key(0, 1).is_none() && user_key(1, -1).is_none());
        assert!(user_key(1, 1).is_some());
        assert!(!valid_resource("") && !valid_resource(&"r".repeat(1024)));
        assert!(!valid_resource("a\nb") && valid_resource("phone"));
        assert!(!valid_node("a.b") && !valid_node("") && valid_node("node-1_b"));
        assert!(room_key(1, "5c094c0ce588ce6856f87422").is_some());
        assert!(room_key(0, "5c094c0ce588ce6856f87422").is_none());
        assert!(room_key(1, "5C094C0CE588CE6856F87422").is_none());
        assert!(room_key(1, "../etc").is_none() && room_key(1, "").is_none());
    }
}
