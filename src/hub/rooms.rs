//! Live room state for group dialogs: which connections have joined which room (XEP-0045
//! occupancy: one nick per user, unique in the room; the SDK's nick is the user id), the names
//! of live standard rooms (`name@muc.{domain}` ↔ dialog), and a membership cache per dialog so a group message costs no
//! database round trip once its sender has been checked. The cache is invalidated by chat
//! events (occupants changed, dialog deleted), by an epoch that makes a load racing an
//! invalidation harmless, and by a short expiry as a backstop. No SQL, no rules, no sockets,
//! nothing from the adapters.

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

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, HashMap<i64, Occupant>>,
    by_conn: HashMap<ConnId, HashSet<RoomKey>>,
    cache: HashMap<RoomKey, Cached>,
    epoch: u64,
    /// Live standard rooms: (application, name) → dialog, and back. Entries go with the room's
    /// last occupant, so they are bounded by the live rooms.
    names: HashMap<(AppId, String), String>,
    name_of: HashMap<RoomKey, String>,
}

impl State {
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
        if st
            .rooms
            .get(key)
            .is_some_and(|r| r.values().any(|o| o.user != user && o.nick == nick))
        {
            return Err(JoinError::NickTaken);
        }
        st.by_conn.entry(conn).or_default().insert(key.clone());
        let room = st.rooms.entry(key.clone()).or_default();
        let others = room.values().filter(|o| o.user != user).cloned().collect();
        let occ = room.entry(user).or_insert_with(|| Occupant {
            user,
            nick: nick.to_owned(),
            conns: Vec::new(),
            presence: presence.clone(),
        });
        let first = occ.conns.is_empty();
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
        self.lock()
            .rooms
            .get(key)
            .and_then(|r| r.get(&user))
            .map(|o| o.nick.clone())
    }

    /// The occupant holding `nick`.
    pub fn by_nick(&self, key: &RoomKey, nick: &str) -> Option<Occupant> {
        self.lock()
            .rooms
            .get(key)
            .and_then(|r| r.values().find(|o| o.nick == nick).cloned())
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
    /// was the user's last joined connection (the occupant left).
    pub fn leave(&self, key: &RoomKey, user: i64, conn: ConnId) -> Option<Option<Occupant>> {
        let mut st = self.lock();
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
            room.remove(&user)
        } else {
            None
        };
        st.drop_if_empty(key);
        Some(gone)
    }

    /// Every room the connection had joined, left; the occupants that left with it.
    pub fn leave_conn(&self, user: i64, conn: ConnId) -> Vec<(RoomKey, Occupant)> {
        let keys = self.lock().by_conn.remove(&conn).unwrap_or_default();
        keys.into_iter()
            .filter_map(|k| match self.leave(&k, user, conn) {
                Some(Some(o)) => Some((k, o)),
                _ => None,
            })
            .collect()
    }

    /// Removes a user (every connection) from a room.
    pub fn remove_user(&self, key: &RoomKey, user: i64) -> Option<Occupant> {
        let mut st = self.lock();
        let room = st.rooms.get_mut(key)?;
        let occ = room.remove(&user)?;
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
        let occ: Vec<Occupant> = st
            .rooms
            .remove(key)
            .map(|r| r.into_values().collect())
            .unwrap_or_default();
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

    /// The room's occupants now.
    pub fn occupants(&self, key: &RoomKey) -> Vec<Occupant> {
        self.lock()
            .rooms
            .get(key)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The users joined to the room (sorted).
    pub fn joined_users(&self, key: &RoomKey) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .lock()
            .rooms
            .get(key)
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
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
