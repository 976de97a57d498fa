//! Live room state for group dialogs: which connections have joined which room (XEP-0045
//! occupancy, nick = user id), and a membership cache per dialog so a group message costs no
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

    /// Adds a connection to a room (again: its presence is updated).
    pub fn join(
        &self,
        key: &RoomKey,
        user: i64,
        conn: ConnId,
        resource: &str,
        presence: Element,
    ) -> Joined {
        let mut st = self.lock();
        st.by_conn.entry(conn).or_default().insert(key.clone());
        let room = st.rooms.entry(key.clone()).or_default();
        let others = room.values().filter(|o| o.user != user).cloned().collect();
        let occ = room.entry(user).or_insert_with(|| Occupant {
            user,
            conns: Vec::new(),
            presence: presence.clone(),
        });
        let first = occ.conns.is_empty();
        occ.presence = presence;
        let again = occ.conns.iter().any(|(c, _)| *c == conn);
        if !again {
            occ.conns.push((conn, resource.to_owned()));
        }
        Joined {
            first,
            again,
            others,
        }
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
        if room.is_empty() {
            st.rooms.remove(key);
        }
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
        if room.is_empty() {
            st.rooms.remove(key);
        }
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
        assert!(r.join(&key(), 7, 1, "a", p()).first);
        assert!(!r.join(&key(), 7, 2, "b", p()).first);
        assert_eq!(r.join(&key(), 8, 3, "c", p()).others.len(), 1);
        assert!(matches!(r.leave(&key(), 7, 1), Some(None)));
        assert!(r.leave(&key(), 7, 1).is_none());
        assert_eq!(r.leave_conn(7, 2).len(), 1);
        assert_eq!(r.joined_users(&key()), vec![8]);
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
