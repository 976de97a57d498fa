//! Live state: which users have which connections right now (the session registry), with each
//! connection's resource, flags (available, carbons, client state) and a sender handle; plus
//! status-streaming subscriptions and resumable stream-management sessions. Routing and REST →
//! XMPP fan-out go through it. It holds no socket, no SQL and no XML parsing: it moves owned
//! `Element`s into per-connection queues. Room occupancy lives in `rooms`.

pub mod rooms;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::xmpp::stanza::UserKey;
use crate::xmpp::stream::Element;

/// A connection's id, unique for the life of the process.
pub type ConnId = u64;

/// What the hub can hand a connection.
#[derive(Debug)]
pub enum Outbound {
    /// A stanza to write, already addressed (`from`, `to` set). Boxed: a queue allocates its
    /// slots in blocks of 32 when it is created, so every idle connection pays 32 × this
    /// enum's size (about 3 KiB with an inline `Element`, 0.5 KiB boxed).
    Stanza(Box<Element>),
    /// Another stream bound the same resource: close this one with `<conflict/>`.
    Replaced,
}

/// Handed to a parked stream-management session to resume it on a new connection.
pub type ResumeSender = mpsc::Sender<crate::xmpp::session::ResumeRequest>;

struct Conn {
    id: ConnId,
    resource: String,
    tx: mpsc::Sender<Outbound>,
    available: bool,
    carbons: bool,
    active: bool,
}

/// A connection as the rest of the server may see it.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub id: ConnId,
    pub resource: String,
    pub available: bool,
    pub carbons: bool,
    /// False after XEP-0352 `<inactive/>` or Tigase `mobile enable=true`: push-eligible.
    pub active: bool,
}

#[derive(Default)]
struct State {
    users: HashMap<UserKey, Vec<Conn>>,
    next_id: ConnId,
    status_subscribers: HashMap<UserKey, HashSet<(UserKey, ConnId)>>,
    resumable: HashMap<String, (UserKey, ResumeSender)>,
}

/// Why a connection could not be registered.
#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    TooManyConnections,
}

/// The session registry. One per server; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Hub {
    state: Mutex<State>,
    /// Group-dialog rooms: joined occupants and the membership cache.
    pub rooms: rooms::Rooms,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a bound connection. A connection already holding `resource` is told it was
    /// replaced (RFC 6120 §7.7.2.2: the newer stream wins) and removed.
    pub fn register(
        &self,
        user: UserKey,
        resource: &str,
        tx: mpsc::Sender<Outbound>,
        max_per_user: usize,
    ) -> Result<ConnId, RegisterError> {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let conns = st.users.entry(user).or_default();
        if let Some(pos) = conns.iter().position(|c| c.resource == resource) {
            let old = conns.remove(pos);
            let _ = old.tx.try_send(Outbound::Replaced);
        }
        if conns.len() >= max_per_user {
            return Err(RegisterError::TooManyConnections);
        }
        conns.push(Conn {
            id,
            resource: resource.to_owned(),
            tx,
            available: false,
            carbons: false,
            active: true,
        });
        Ok(id)
    }

    /// Removes a connection; returns true when it was the user's last one.
    pub fn unregister(&self, user: UserKey, conn: ConnId) -> bool {
        let mut st = self.lock();
        let last = match st.users.get_mut(&user) {
            Some(conns) => {
                conns.retain(|c| c.id != conn);
                conns.is_empty()
            }
            None => true,
        };
        if last {
            st.users.remove(&user);
        }
        for subs in st.status_subscribers.values_mut() {
            subs.retain(|(_, c)| *c != conn);
        }
        last
    }

    /// **The fan-out entry point**: queues `stanza` (already addressed) to every connection of
    /// `user`; returns how many took it. REST → XMPP pushes and 1:1 routing both use this.
    pub fn deliver_to_user(&self, user: UserKey, stanza: &Element) -> usize {
        let st = self.lock();
        let Some(conns) = st.users.get(&user) else {
            return 0;
        };
        conns.iter().filter(|c| queue(c, stanza.clone())).count()
    }

    /// Like [`Hub::deliver_to_user`], but each copy is addressed to its connection's full JID
    /// (`{bare}/{resource}`), as room traffic is.
    pub fn deliver_addressed(&self, user: UserKey, bare: &str, stanza: &Element) -> usize {
        let st = self.lock();
        let Some(conns) = st.users.get(&user) else {
            return 0;
        };
        conns
            .iter()
            .filter(|c| {
                let mut el = stanza.clone();
                el.set_attr("to", format!("{bare}/{}", c.resource));
                queue(c, el)
            })
            .count()
    }

    /// Queues `stanza` to the connection bound to `resource`; false when there is none.
    pub fn deliver_to_resource(&self, user: UserKey, resource: &str, stanza: Element) -> bool {
        let st = self.lock();
        st.users
            .get(&user)
            .and_then(|conns| conns.iter().find(|c| c.resource == resource))
            .is_some_and(|c| queue(c, stanza))
    }

    /// Queues `stanza` to one connection by id.
    pub fn deliver_to_conn(&self, user: UserKey, conn: ConnId, stanza: Element) -> bool {
        let st = self.lock();
        st.users
            .get(&user)
            .and_then(|conns| conns.iter().find(|c| c.id == conn))
            .is_some_and(|c| queue(c, stanza))
    }

    /// The user's live connections.
    pub fn connections(&self, user: UserKey) -> Vec<ConnInfo> {
        let st = self.lock();
        st.users
            .get(&user)
            .map(|conns| {
                conns
                    .iter()
                    .map(|c| ConnInfo {
                        id: c.id,
                        resource: c.resource.clone(),
                        available: c.available,
                        carbons: c.carbons,
                        active: c.active,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every user of `app` with a live connection (a broadcast dialog reaches them all).
    pub fn online_users(&self, app: crate::model::AppId) -> Vec<i64> {
        self.lock()
            .users
            .iter()
            .filter(|(k, conns)| k.app == app && !conns.is_empty())
            .map(|(k, _)| k.user.0)
            .collect()
    }

    pub fn is_online(&self, user: UserKey) -> bool {
        self.lock().users.get(&user).is_some_and(|c| !c.is_empty())
    }

    fn update(&self, user: UserKey, conn: ConnId, f: impl FnOnce(&mut Conn)) {
        let mut st = self.lock();
        if let Some(c) = st
            .users
            .get_mut(&user)
            .and_then(|conns| conns.iter_mut().find(|c| c.id == conn))
        {
            f(c);
        }
    }

    pub fn set_available(&self, user: UserKey, conn: ConnId, on: bool) {
        self.update(user, conn, |c| c.available = on);
    }

    pub fn set_carbons(&self, user: UserKey, conn: ConnId, on: bool) {
        self.update(user, conn, |c| c.carbons = on);
    }

    /// Client state (XEP-0352 / Tigase mobile v2), kept for push decisions.
    pub fn set_active(&self, user: UserKey, conn: ConnId, on: bool) {
        self.update(user, conn, |c| c.active = on);
    }

    /// `subscriber`'s connection wants `target`'s last-activity changes.
    pub fn subscribe_status(&self, target: UserKey, subscriber: UserKey, conn: ConnId, on: bool) {
        let mut st = self.lock();
        let subs = st.status_subscribers.entry(target).or_default();
        if on {
            subs.insert((subscriber, conn));
        } else {
            subs.remove(&(subscriber, conn));
        }
    }

    /// The connections subscribed to `target`'s status.
    pub fn status_subscribers(&self, target: UserKey) -> Vec<(UserKey, ConnId)> {
        self.lock()
            .status_subscribers
            .get(&target)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A dropped stream-management session waits under `id` for a resumption.
    pub fn park_resumable(&self, id: &str, user: UserKey, tx: ResumeSender) {
        self.lock().resumable.insert(id.to_owned(), (user, tx));
    }

    /// Takes the parked session `id` if it belongs to `user`.
    pub fn take_resumable(&self, id: &str, user: UserKey) -> Option<ResumeSender> {
        let mut st = self.lock();
        match st.resumable.get(id) {
            Some((owner, _)) if *owner == user => st.resumable.remove(id).map(|(_, tx)| tx),
            _ => None,
        }
    }

    pub fn forget_resumable(&self, id: &str) {
        self.lock().resumable.remove(id);
    }
}

fn queue(c: &Conn, stanza: Element) -> bool {
    match c.tx.try_send(Outbound::Stanza(Box::new(stanza))) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(conn = c.id, "outbound queue full: stanza dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, UserId};

    fn key(u: i64) -> UserKey {
        UserKey {
            app: AppId(1),
            user: UserId(u),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_panicking_while_holding_the_registry_lock_leaves_it_serving() {
        let hub = std::sync::Arc::new(Hub::new());
        let (tx, _rx) = mpsc::channel(4);
        hub.register(key(1), "a", tx.clone(), 10).unwrap();
        let h = hub.clone();
        let task = tokio::spawn(async move {
            let _held = h.lock();
            panic!("a connection task's bug");
        });
        // The panic ends that task only, and poisons the mutex...
        assert!(task.await.unwrap_err().is_panic());
        assert!(hub.state.is_poisoned());
        // ...which every later user of the registry shrugs off.
        hub.register(key(2), "b", tx, 10).unwrap();
        assert_eq!(hub.connections(key(1)).len(), 1);
        assert_eq!(hub.connections(key(2)).len(), 1);
    }

    #[test]
    fn same_resource_twice_replaces_the_older_connection() {
        let hub = Hub::new();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        hub.register(key(1), "r", tx1, 10).unwrap();
        hub.register(key(1), "r", tx2, 10).unwrap();
        assert!(matches!(rx1.try_recv(), Ok(Outbound::Replaced)));
        assert_eq!(hub.connections(key(1)).len(), 1);
    }

    #[test]
    fn connections_per_user_are_capped() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel(4);
        hub.register(key(1), "a", tx.clone(), 1).unwrap();
        assert_eq!(
            hub.register(key(1), "b", tx, 1),
            Err(RegisterError::TooManyConnections)
        );
    }

    #[test]
    fn deliver_to_user_reaches_every_connection() {
        let hub = Hub::new();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        hub.register(key(1), "a", tx1, 10).unwrap();
        hub.register(key(1), "b", tx2, 10).unwrap();
        let n = hub.deliver_to_user(key(1), &Element::new("message", "jabber:client"));
        assert_eq!(n, 2);
        assert!(rx1.try_recv().is_ok() && rx2.try_recv().is_ok());
        assert_eq!(hub.deliver_to_user(key(2), &Element::new("m", "x")), 0);
    }
}
