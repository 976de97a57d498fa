//! Live room state for group dialogs: which connections have joined which room (XEP-0045
//! occupancy: one nick per user, unique in the room; the SDK's nick is the user id), the names
//! of live standard rooms (`name@muc.{domain}` ↔ dialog), and a membership cache per dialog so a group message costs no
//! database round trip once its sender has been checked. The cache is invalidated by chat
//! events (occupants changed, dialog deleted), by an epoch that makes a load racing an
//! invalidation harmless, and by a short expiry as a backstop. No SQL, no rules, no sockets,
//! nothing from the adapters.
//!
//! With several nodes, each room also knows the occupants joined through other nodes (nick and
//! room presence per user and node, from `hub::cluster`; no connections): lookups (occupant
//! lists, nicks, who has joined) see the whole cluster, so joins, nick conflicts and fan-out
//! behave as on one node. An occupant leaves the room only when no node holds them any more.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ConnId;
use crate::model::{AppId, Dialog};
use crate::xml::Element;

/// A room: the dialog's application and id.
pub type RoomKey = (AppId, String);

/// How long a cached membership is trusted without an event (broadcast dialogs gain inbox
/// members without one).
pub const MEMBERSHIP_TTL: Duration = Duration::from_secs(60);

/// One user in a room, over one or more of their connections.
#[derive(Clone, Debug)]
pub struct Occupant {
    pub user: i64,
    /// The occupant's nick (`room/{nick}`), unique in the room.
    pub nick: String,
    /// The joined connections and their resources.
    pub conns: Vec<(ConnId, String)>,
    /// The presence the room shows for this occupant (`from` set, `to` left to the sender).
    pub presence: Element,
}

/// A dialog's members and the dialog as last loaded.
#[derive(Clone, Debug)]
pub struct Membership {
    pub dialog: Arc<Dialog>,
    /// Everyone who receives the room's messages (occupants, subscribers, senders checked).
    pub members: Arc<Vec<i64>>,
}

struct Cached {
    m: Membership,
    /// Users already checked as allowed to send.
    senders: HashSet<i64>,
    loaded: Instant,
}

/// An occupant as another node holds them: no connection here.
#[derive(Clone, Debug)]
struct RemoteOcc {
    node: Arc<str>,
    nick: String,
    presence: Element,
    /// Not (yet) confirmed by the node's snapshot under way ([`Rooms::mark_remote_stale`]).
    stale: bool,
}

impl RemoteOcc {
    fn occupant(&self, user: i64) -> Occupant {
        Occupant {
            user,
            nick: self.nick.clone(),
            conns: Vec::new(),
            presence: self.presence.clone(),
        }
    }
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, HashMap<i64, Occupant>>,
    /// Occupants joined through other nodes: room → user → one entry per node holding them.
    remote: HashMap<RoomKey, HashMap<i64, Vec<RemoteOcc>>>,
    /// Entries in `remote` (bounded by the caller, `cluster.max_remote_occupants`).
    remote_count: usize,
    by_conn: HashMap<ConnId, HashSet<RoomKey>>,
    cache: HashMap<RoomKey, Cached>,
    epoch: u64,
    /// Live standard rooms: (application, name) → dialog, and back. Entries go with the room's
    /// last occupant, so they are bounded by the live rooms.
    names: HashMap<(AppId, String), String>,
    name_of: HashMap<RoomKey, String>,
}

impl State {
    /// Whether another node holds `user` in the room.
    fn held_elsewhere(&self, key: &RoomKey, user: i64) -> bool {
        self.remote.get(key).is_some_and(|r| r.contains_key(&user))
    }

    /// The occupant as another node shows them (the first node's entry).
    fn remote_occupant(&self, key: &RoomKey, user: i64) -> Option<Occupant> {
        self.remote
            .get(key)
            .and_then(|r| r.get(&user))
            .and_then(|l| l.first())
            .map(|o| o.occupant(user))
    }

    /// Every entry of `user` in the room's remote occupants goes; how many did.
    fn forget_remote_user(&mut self, key: &RoomKey, user: i64) -> Option<Occupant> {
        let room = self.remote.get_mut(key)?;
        let list = room.remove(&user)?;
        if room.is_empty() {
            self.remote.remove(key);
        }
        self.remote_count = self.remote_count.saturating_sub(list.len());
        list.first().map(|o| o.occupant(user))
    }

    /// The room has no occupant left: it and its name go.
    fn drop_if_empty(&mut self, key: &RoomKey) {
        if self.rooms.get(key).is_some_and(HashMap::is_empty) {
            self.rooms.remove(key);
        }
        if !self.rooms.contains_key(key) {
            if let Some(name) = self.name_of.remove(key) {
                self.names.remove(&(key.0, name));
            }
        }
    }
}

/// A join refused by the room's live state.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    /// Another occupant holds the nick.
    NickTaken,
}

/// What a join changed.
#[derive(Debug)]
pub struct Joined {
    /// The user had no joined connection in the room before.
    pub first: bool,
    /// The connection had already joined: this is a presence update, not a join.
    pub again: bool,
    /// The other occupants, to present to the joiner.
    pub others: Vec<Occupant>,
    /// The occupant's previous nick, when this presence changed it.
    pub old_nick: Option<String>,
}

#[derive(Default)]
pub struct Rooms {
    state: Mutex<State>,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rooms with at least one joined occupant (for the metrics).
    pub fn live(&self) -> usize {
        self.lock().rooms.len()
    }

    /// The invalidation epoch; pass it back to [`Rooms::remember`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The cached membership if `sender` has already been allowed to send to the room.
    pub fn cached_sender(&self, key: &RoomKey, sender: i64) -> Option<Membership> {
        let st = self.lock();
        st.cache
            .get(key)
            .filter(|c| c.loaded.elapsed() < MEMBERSHIP_TTL && c.senders.contains(&sender))
            .map(|c| c.m.clone())
    }

    /// Caches a membership loaded at `epoch` for an allowed `sender`, unless an invalidation
    /// happened since. Returns what callers should use either way.
    pub fn remember(
        &self,
        key: RoomKey,
        epoch: u64,
        dialog: Dialog,
        members: Vec<i64>,
        sender: i64,
    ) -> Membership {
        let m = Membership {
            dialog: Arc::new(dialog),
            members: Arc::new(members),
        };
        let mut st = self.lock();
        if st.epoch != epoch {
            return m;
        }
        // No invalidation since this load began, so an unexpired entry describes the same room
        // (its last-message fields aside): the sender joins it.
        if let Some(c) = st
            .cache
            .get_mut(&key)
            .filter(|c| c.loaded.elapsed() < MEMBERSHIP_TTL)
        {
            c.senders.insert(sender);
            if !c.m.members.contains(&sender) {
                Arc::make_mut(&mut c.m.members).push(sender);
            }
            return c.m.clone();
        }
        st.cache.insert(
            key,
            Cached {
                m: m.clone(),
                senders: HashSet::from([sender]),
                loaded: Instant::now(),
            },
        );
        m
    }

    /// Forgets a room's cached membership.
    pub fn invalidate(&self, key: &RoomKey) {
        let mut st = self.lock();
        st.epoch += 1;
        st.cache.remove(key);
    }

    /// Forgets every cached membership (the event stream lagged).
    pub fn invalidate_all(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.cache.clear();
    }

    /// Whether `conn` may join `key`: it is already in it, or in fewer than `max` rooms.
    pub fn may_join(&self, key: &RoomKey, conn: ConnId, max: usize) -> bool {
        match self.lock().by_conn.get(&conn) {
            Some(rooms) => rooms.contains(key) || rooms.len() < max,
            None => true,
        }
    }

    /// Adds a connection to a room under `nick` (again: its presence, and maybe its nick, is
    /// updated). A user has one nick in a room, over all their connections; a nick another
    /// occupant holds is refused.
    pub fn join(
        &self,
        key: &RoomKey,
        user: i64,
        conn: ConnId,
        resource: &str,
        nick: &str,
        presence: Element,
    ) -> Result<Joined, JoinError> {
        let mut st = self.lock();
        let taken_here = st
            .rooms
            .get(key)
            .is_some_and(|r| r.values().any(|o| o.user != user && o.nick == nick));
        let taken_elsewhere = st.remote.get(key).is_some_and(|r| {
            r.iter()
                .any(|(u, l)| *u != user && l.iter().any(|o| o.nick == nick))
        });
        if taken_here || taken_elsewhere {
            return Err(JoinError::NickTaken);
        }
        let elsewhere = st.held_elsewhere(key, user);
        let remote_nick = st.remote_occupant(key, user).map(|o| o.nick);
        let mut others: Vec<Occupant> = st
            .remote
            .get(key)
            .map(|r| {
                r.iter()
                    .filter(|(u, _)| **u != user)
                    .filter_map(|(u, l)| l.first().map(|o| o.occupant(*u)))
                    .collect()
            })
            .unwrap_or_default();
        st.by_conn.entry(conn).or_default().insert(key.clone());
        let room = st.rooms.entry(key.clone()).or_default();
        // An occupant joined here and elsewhere is shown once, as this node holds them.
        others.retain(|o| !room.contains_key(&o.user));
        others.extend(room.values().filter(|o| o.user != user).cloned());
        // A user joined through another node keeps the nick that node shows for them: a join
        // here under another nick is a nick change (old_nick), as on one node.
        let seed = if room.contains_key(&user) {
            None
        } else {
            remote_nick
        };
        let occ = room.entry(user).or_insert_with(|| Occupant {
            user,
            nick: seed.unwrap_or_else(|| nick.to_owned()),
            conns: Vec::new(),
            presence: presence.clone(),
        });
        let first = occ.conns.is_empty() && !elsewhere;
        let old_nick =
            (occ.nick != nick).then(|| std::mem::replace(&mut occ.nick, nick.to_owned()));
        occ.presence = presence;
        let again = occ.conns.iter().any(|(c, _)| *c == conn);
        if !again {
            occ.conns.push((conn, resource.to_owned()));
        }
        Ok(Joined {
            first,
            again,
            others,
            old_nick,
        })
    }

    /// Whether another node holds `user` in the room (has a connection of theirs joined).
    pub fn held_elsewhere(&self, key: &RoomKey, user: i64) -> bool {
        self.lock().held_elsewhere(key, user)
    }

    /// Records that a live room is the standard room `name` (lower case).
    pub fn name_room(&self, key: &RoomKey, name: &str) {
        let mut st = self.lock();
        if !st.rooms.contains_key(key) {
            return;
        }
        st.names.insert((key.0, name.to_owned()), key.1.clone());
        st.name_of.insert(key.clone(), name.to_owned());
    }

    /// The dialog of the live standard room `name` of an application.
    pub fn dialog_named(&self, app: AppId, name: &str) -> Option<String> {
        self.lock().names.get(&(app, name.to_owned())).cloned()
    }

    /// The name of a live standard room.
    pub fn name_of(&self, key: &RoomKey) -> Option<String> {
        self.lock().name_of.get(key).cloned()
    }

    /// The nick of a user in the room, if they have joined.
    pub fn nick_of(&self, key: &RoomKey, user: i64) -> Option<String> {
        let st = self.lock();
        st.rooms
            .get(key)
            .and_then(|r| r.get(&user))
            .map(|o| o.nick.clone())
            .or_else(|| st.remote_occupant(key, user).map(|o| o.nick))
    }

    /// The occupant holding `nick`.
    pub fn by_nick(&self, key: &RoomKey, nick: &str) -> Option<Occupant> {
        let st = self.lock();
        st.rooms
            .get(key)
            .and_then(|r| r.values().find(|o| o.nick == nick).cloned())
            .or_else(|| {
                st.remote.get(key).and_then(|r| {
                    r.iter().find_map(|(u, l)| {
                        l.iter().find(|o| o.nick == nick).map(|o| o.occupant(*u))
                    })
                })
            })
    }

    /// Replaces the presence the room shows for an occupant (their role changed).
    pub fn set_presence(&self, key: &RoomKey, user: i64, presence: Element) {
        if let Some(o) = self
            .lock()
            .rooms
            .get_mut(key)
            .and_then(|r| r.get_mut(&user))
        {
            o.presence = presence;
        }
    }

    /// The rooms the connection has joined.
    pub fn rooms_of(&self, conn: ConnId) -> Vec<RoomKey> {
        self.lock()
            .by_conn
            .get(&conn)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the connection has joined the room.
    pub fn has_joined(&self, key: &RoomKey, conn: ConnId) -> bool {
        self.lock()
            .by_conn
            .get(&conn)
            .is_some_and(|rooms| rooms.contains(key))
    }

    /// Removes a connection from a room. `None`: it had not joined; `Some(occupant)` when it
    /// was the user's last joined connection, here and on every other node (the occupant left).
    pub fn leave(&self, key: &RoomKey, user: i64, conn: ConnId) -> Option<Option<Occupant>> {
        let mut st = self.lock();
        let elsewhere = st.held_elsewhere(key, user);
        if let Some(set) = st.by_conn.get_mut(&conn) {
            set.remove(key);
            if set.is_empty() {
                st.by_conn.remove(&conn);
            }
        }
        let room = st.rooms.get_mut(key)?;
        let occ = room.get_mut(&user)?;
        let before = occ.conns.len();
        occ.conns.retain(|(c, _)| *c != conn);
        if occ.conns.len() == before {
            return None;
        }
        let gone = if occ.conns.is_empty() {
            room.remove(&user).filter(|_| !elsewhere)
        } else {
            None
        };
        st.drop_if_empty(key);
        Some(gone)
    }

    /// Every room the connection had joined, left: each room, and the occupant when they left
    /// it with this connection (as [`Rooms::leave`]).
    pub fn leave_conn(&self, user: i64, conn: ConnId) -> Vec<(RoomKey, Option<Occupant>)> {
        let keys = self.lock().by_conn.remove(&conn).unwrap_or_default();
        keys.into_iter()
            .filter_map(|k| self.leave(&k, user, conn).map(|gone| (k, gone)))
            .collect()
    }

    /// Removes a user (every connection, and whatever other nodes hold of them) from a room;
    /// the occupant, as this node held them or else as another node did.
    pub fn remove_user(&self, key: &RoomKey, user: i64) -> Option<Occupant> {
        let mut st = self.lock();
        let remote = st.forget_remote_user(key, user);
        let Some(occ) = st.rooms.get_mut(key).and_then(|room| room.remove(&user)) else {
            return remote;
        };
        st.drop_if_empty(key);
        for (c, _) in &occ.conns {
            if let Some(set) = st.by_conn.get_mut(c) {
                set.remove(key);
            }
        }
        Some(occ)
    }

    /// Empties a room; returns who was in it.
    pub fn remove_room(&self, key: &RoomKey) -> Vec<Occupant> {
        let mut st = self.lock();
        let mut occ: Vec<Occupant> = st
            .rooms
            .remove(key)
            .map(|r| r.into_values().collect())
            .unwrap_or_default();
        if let Some(remote) = st.remote.remove(key) {
            for (u, l) in remote {
                st.remote_count = st.remote_count.saturating_sub(l.len());
                if !occ.iter().any(|o| o.user == u) {
                    occ.extend(l.first().map(|o| o.occupant(u)));
                }
            }
        }
        st.drop_if_empty(key);
        for o in &occ {
            for (c, _) in &o.conns {
                if let Some(set) = st.by_conn.get_mut(c) {
                    set.remove(key);
                }
            }
        }
        occ
    }

    /// Live rooms (at least one joined occupant) and the occupants in them, for operators.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.rooms.len(), st.rooms.values().map(HashMap::len).sum())
    }

    /// The room's occupants now, on every node (one per user; those joined only through other
    /// nodes have no connection here).
    pub fn occupants(&self, key: &RoomKey) -> Vec<Occupant> {
        let st = self.lock();
        let here = st.rooms.get(key);
        let mut v: Vec<Occupant> = here
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        if let Some(remote) = st.remote.get(key) {
            v.extend(
                remote
                    .iter()
                    .filter(|(u, _)| !here.is_some_and(|r| r.contains_key(u)))
                    .filter_map(|(u, l)| l.first().map(|o| o.occupant(*u))),
            );
        }
        v
    }

    /// The room's occupants with a connection joined through this node (what a presence from
    /// the room is delivered to here).
    pub fn local_occupants(&self, key: &RoomKey) -> Vec<Occupant> {
        self.lock()
            .rooms
            .get(key)
            .map(|r| {
                r.values()
                    .filter(|o| !o.conns.is_empty())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The users joined to the room, on every node (sorted).
    pub fn joined_users(&self, key: &RoomKey) -> Vec<i64> {
        let st = self.lock();
        let mut v: Vec<i64> = st
            .rooms
            .get(key)
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default();
        if let Some(remote) = st.remote.get(key) {
            v.extend(remote.keys().copied());
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    // ---- occupants held by other nodes (`hub::cluster`) ----

    /// This node's nick and room presence for `user`, while they have a connection joined here.
    pub fn local_state(&self, key: &RoomKey, user: i64) -> Option<(String, Element)> {
        self.lock()
            .rooms
            .get(key)
            .and_then(|r| r.get(&user))
            .filter(|o| !o.conns.is_empty())
            .map(|o| (o.nick.clone(), o.presence.clone()))
    }

    /// Every occupant joined through this node: (room, user, nick, presence), for a snapshot.
    pub fn local_occupancy(&self) -> Vec<(RoomKey, i64, String, Element)> {
        let st = self.lock();
        st.rooms
            .iter()
            .flat_map(|(k, r)| {
                r.values()
                    .filter(|o| !o.conns.is_empty())
                    .map(|o| (k.clone(), o.user, o.nick.clone(), o.presence.clone()))
            })
            .collect()
    }

    /// `node` holds `user` in the room under `nick` with `presence`. False (nothing recorded)
    /// when that would make more than `max` entries of other nodes' occupants.
    pub fn set_remote(
        &self,
        node: &Arc<str>,
        key: &RoomKey,
        user: i64,
        nick: String,
        presence: Element,
        max: usize,
    ) -> bool {
        let mut st = self.lock();
        let known = st
            .remote
            .get_mut(key)
            .and_then(|r| r.get_mut(&user))
            .and_then(|l| l.iter_mut().find(|o| o.node == *node));
        if let Some(o) = known {
            o.nick = nick;
            o.presence = presence;
            o.stale = false;
            return true;
        }
        if st.remote_count >= max {
            return false;
        }
        st.remote_count += 1;
        st.remote
            .entry(key.clone())
            .or_default()
            .entry(user)
            .or_default()
            .push(RemoteOcc {
                node: node.clone(),
                nick,
                presence,
                stale: false,
            });
        true
    }

    /// `node` no longer holds `user` in the room. The occupant when they have now left it on
    /// every node (no connection here, no other node holding them).
    pub fn remove_remote(&self, node: &str, key: &RoomKey, user: i64) -> Option<Occupant> {
        let mut st = self.lock();
        let room = st.remote.get_mut(key)?;
        let list = room.get_mut(&user)?;
        let pos = list.iter().position(|o| &*o.node == node)?;
        let gone = list.remove(pos).occupant(user);
        let emptied = list.is_empty();
        if emptied {
            room.remove(&user);
        }
        if room.is_empty() {
            st.remote.remove(key);
        }
        st.remote_count = st.remote_count.saturating_sub(1);
        let here = st.rooms.get(key).is_some_and(|r| r.contains_key(&user));
        (emptied && !here).then_some(gone)
    }

    /// Forgets everything `node` held (it died, left or restarted): the occupants that thereby
    /// left their rooms on every node.
    pub fn drop_remote_node(&self, node: &str) -> Vec<(RoomKey, Occupant)> {
        self.drop_remote(node, false)
    }

    /// A snapshot of what `node` holds begins: its entries are stale until the snapshot
    /// confirms them ([`Rooms::set_remote`]); those it does not are gone at its end
    /// ([`Rooms::drop_stale_remote`]). Until then they stay, so a snapshot in several messages
    /// does not make the occupants of its later messages leave and come back.
    pub fn mark_remote_stale(&self, node: &str) {
        let mut st = self.lock();
        for list in st.remote.values_mut().flat_map(HashMap::values_mut) {
            for o in list.iter_mut().filter(|o| &*o.node == node) {
                o.stale = true;
            }
        }
    }

    /// `node`'s snapshot ended: forgets its entries it did not confirm; the occupants that
    /// thereby left their rooms on every node.
    pub fn drop_stale_remote(&self, node: &str) -> Vec<(RoomKey, Occupant)> {
        self.drop_remote(node, true)
    }

    /// Forgets `node`'s entries (only the stale ones if `only_stale`); the occupants that
    /// thereby left their rooms on every node.
    fn drop_remote(&self, node: &str, only_stale: bool) -> Vec<(RoomKey, Occupant)> {
        let mut st = self.lock();
        let st = &mut *st;
        let mut gone = Vec::new();
        let mut dropped = 0;
        let goes = |o: &RemoteOcc| &*o.node == node && (o.stale || !only_stale);
        st.remote.retain(|key, room| {
            room.retain(|user, list| {
                let before = list.len();
                let first = list.iter().find(|o| goes(o)).cloned();
                list.retain(|o| !goes(o));
                dropped += before - list.len();
                if let (Some(o), true) = (first, list.is_empty()) {
                    if !st.rooms.get(key).is_some_and(|r| r.contains_key(user)) {
                        gone.push((key.clone(), o.occupant(*user)));
                    }
                }
                !list.is_empty()
            });
            !room.is_empty()
        });
        st.remote_count = st.remote_count.saturating_sub(dropped);
        gone
    }

    /// Entries of other nodes' occupants held now.
    pub fn remote_count(&self) -> usize {
        self.lock().remote_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RoomKey {
        (AppId(1), "d".into())
    }

    fn p() -> Element {
        Element::new("presence", "jabber:client")
    }

    #[test]
    fn the_last_connection_leaving_takes_the_occupant_out() {
        let r = Rooms::default();
        assert!(r.join(&key(), 7, 1, "a", "7", p()).unwrap().first);
        assert!(!r.join(&key(), 7, 2, "b", "7", p()).unwrap().first);
        assert_eq!(r.join(&key(), 8, 3, "c", "8", p()).unwrap().others.len(), 1);
        assert!(matches!(r.leave(&key(), 7, 1), Some(None)));
        assert!(r.leave(&key(), 7, 1).is_none());
        assert_eq!(r.leave_conn(7, 2).len(), 1);
        assert_eq!(r.joined_users(&key()), vec![8]);
    }

    #[test]
    fn a_nick_is_one_occupants_and_changes_with_a_presence() {
        let r = Rooms::default();
        r.join(&key(), 7, 1, "a", "alice", p()).unwrap();
        assert_eq!(
            r.join(&key(), 8, 2, "b", "alice", p()).unwrap_err(),
            JoinError::NickTaken
        );
        assert!(!r.has_joined(&key(), 2));
        let j = r.join(&key(), 7, 1, "a", "alicia", p()).unwrap();
        assert_eq!(j.old_nick.as_deref(), Some("alice"));
        assert!(j.again);
        assert!(r.join(&key(), 8, 2, "b", "alice", p()).is_ok());
        assert_eq!(r.by_nick(&key(), "alicia").map(|o| o.user), Some(7));
    }

    fn node(n: &str) -> Arc<str> {
        n.into()
    }

    #[test]
    fn a_user_joined_through_another_node_keeps_that_nick_until_a_change_here() {
        let r = Rooms::default();
        r.set_remote(&node("b"), &key(), 7, "alice".into(), p(), 10);
        assert!(r.held_elsewhere(&key(), 7));
        let j = r.join(&key(), 7, 1, "a", "alicia", p()).unwrap();
        assert!(!j.first, "the room already showed her");
        assert_eq!(j.old_nick.as_deref(), Some("alice"), "a nick change");
        assert_eq!(r.nick_of(&key(), 7).as_deref(), Some("alicia"));
        // Under the same nick it is no change.
        r.set_remote(&node("b"), &key(), 8, "bob".into(), p(), 10);
        assert_eq!(
            r.join(&key(), 8, 2, "b", "bob", p()).unwrap().old_nick,
            None
        );
    }

    #[test]
    fn an_occupant_held_by_another_node_is_listed_and_holds_its_nick() {
        let r = Rooms::default();
        assert!(r.set_remote(&node("b"), &key(), 8, "bob".into(), p(), 10));
        assert_eq!(r.joined_users(&key()), vec![8]);
        assert_eq!(r.nick_of(&key(), 8).as_deref(), Some("bob"));
        assert_eq!(
            r.join(&key(), 7, 1, "a", "bob", p()).unwrap_err(),
            JoinError::NickTaken
        );
        let j = r.join(&key(), 7, 1, "a", "alice", p()).unwrap();
        assert!(j.first);
        assert_eq!(j.others.len(), 1);
        assert!(j.others[0].conns.is_empty(), "no connection here");
        assert_eq!(r.occupants(&key()).len(), 2);
        // Only what this node holds goes into its snapshot.
        assert_eq!(r.local_occupancy().len(), 1);
    }

    #[test]
    fn an_occupant_on_two_nodes_leaves_only_when_the_last_one_lets_go() {
        let r = Rooms::default();
        r.set_remote(&node("b"), &key(), 7, "alice".into(), p(), 10);
        r.set_remote(&node("c"), &key(), 7, "alice".into(), p(), 10);
        let j = r.join(&key(), 7, 1, "a", "alice", p()).unwrap();
        assert!(!j.first, "the room already showed alice");
        assert!(matches!(r.leave(&key(), 7, 1), Some(None)));
        assert!(r.remove_remote("b", &key(), 7).is_none());
        assert_eq!(r.remove_remote("c", &key(), 7).map(|o| o.user), Some(7));
        assert!(r.joined_users(&key()).is_empty());
        assert_eq!(r.remote_count(), 0);
    }

    #[test]
    fn a_nodes_occupants_go_with_it() {
        let r = Rooms::default();
        let other: RoomKey = (AppId(1), "e".into());
        r.set_remote(&node("b"), &key(), 8, "bob".into(), p(), 10);
        r.set_remote(&node("b"), &other, 8, "bob".into(), p(), 10);
        r.set_remote(&node("c"), &key(), 9, "carol".into(), p(), 10);
        r.join(&key(), 8, 1, "a", "bob", p()).unwrap();
        let mut gone: Vec<RoomKey> = r
            .drop_remote_node("b")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        gone.sort();
        // Bob is still joined here in the first room: he left only the other.
        assert_eq!(gone, vec![other]);
        assert_eq!(r.joined_users(&key()), vec![8, 9]);
        assert_eq!(r.remote_count(), 1);
    }

    #[test]
    fn other_nodes_occupants_are_bounded() {
        let r = Rooms::default();
        assert!(r.set_remote(&node("b"), &key(), 8, "bob".into(), p(), 1));
        assert!(!r.set_remote(&node("b"), &key(), 9, "x".into(), p(), 1));
        // An update of a known entry is not a new one.
        assert!(r.set_remote(&node("b"), &key(), 8, "robert".into(), p(), 1));
        assert_eq!(r.nick_of(&key(), 8).as_deref(), Some("robert"));
        assert_eq!(r.remove_user(&key(), 8).map(|o| o.user), Some(8));
        assert_eq!(r.remote_count(), 0);
    }

    #[test]
    fn a_rooms_name_lives_as_long_as_its_occupants() {
        let r = Rooms::default();
        r.name_room(&key(), "lobby");
        assert_eq!(r.dialog_named(AppId(1), "lobby"), None);
        r.join(&key(), 7, 1, "a", "alice", p()).unwrap();
        r.name_room(&key(), "lobby");
        assert_eq!(r.dialog_named(AppId(1), "lobby").as_deref(), Some("d"));
        assert_eq!(r.name_of(&key()).as_deref(), Some("lobby"));
        r.leave_conn(7, 1);
        assert_eq!(r.dialog_named(AppId(1), "lobby"), None);
        assert_eq!(r.name_of(&key()), None);
    }

    #[test]
    fn a_load_racing_an_invalidation_is_not_cached() {
        let r = Rooms::default();
        let epoch = r.epoch();
        r.invalidate(&key());
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let d = Dialog {
            id: crate::model::ObjectId::generate(0),
            application_id: AppId(1),
            kind: crate::model::DialogType::Group,
            owner: crate::model::UserId(1),
            name: None,
            photo: None,
            description: None,
            occupants: vec![1, 2],
            admins: vec![],
            pinned: vec![],
            occupants_count: 2,
            extensions: None,
            data: None,
            allow_preview: false,
            last_message_id: None,
            last_message: None,
            last_message_user_id: None,
            last_message_date_sent: None,
            created_at: now,
            updated_at: now,
        };
        r.remember(key(), epoch, d.clone(), vec![1, 2], 1);
        assert!(r.cached_sender(&key(), 1).is_none());
        let epoch = r.epoch();
        r.remember(key(), epoch, d.clone(), vec![1, 2], 1);
        assert!(r.cached_sender(&key(), 1).is_some());
        assert!(r.cached_sender(&key(), 2).is_none());
        // A second checked sender joins the entry, even one outside the member list.
        let m = r.remember(key(), r.epoch(), d, vec![1, 2], 9);
        assert_eq!(*m.members, vec![1, 2, 9]);
        assert!(r.cached_sender(&key(), 9).is_some());
        assert!(r.cached_sender(&key(), 1).is_some());
    }
}
