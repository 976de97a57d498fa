//! Live state: which users have which connections right now (the session registry), with each
//! connection's resource, flags (available, carbons, client state) and a sender handle; plus
//! status-streaming subscriptions and resumable stream-management sessions. Routing and REST →
//! XMPP fan-out go through it. It holds no socket, no SQL and no XML parsing: it moves owned
//! `crate::xml::Element`s into per-connection queues. Room occupancy lives in `rooms`. With
//! several nodes (`cluster`, over a `bus`), delivery and "is online" also cover other nodes'
//! sessions; the `local_*` methods are this node's share, used for what arrives from the bus.
//! It must not import an adapter (`xmpp`, `rest`) nor decide a chat rule: adapters call it,
//! never the reverse (checked by `lib.rs`'s layering test).

pub mod bus;
pub mod cluster;
pub mod rooms;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::identity::{ChatAuth, Revocation, Revoker};
use crate::model::UserKey;
use crate::ops::telemetry::QUEUE_DROPS;
use crate::xml::Element;

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
    /// The credential this stream rests on was revoked: close it (see [`Revoked`]).
    Revoked,
}

/// A connection's revocation mark, shared by the hub and the connection task. Set (never
/// cleared) when what the stream authenticated with is revoked; the task checks it before every
/// stanza it handles or writes, and the hub also queues [`Outbound::Revoked`] to wake it, so a
/// full queue cannot delay the close past the next stanza.
#[derive(Clone, Debug, Default)]
pub struct Revoked(Arc<AtomicU8>);

impl Revoked {
    const NOT_AUTHORIZED: u8 = 1;
    const RESET: u8 = 2;
    const ACCOUNT_GONE: u8 = 3;

    fn set(&self, r: &Revocation) {
        let v = match r {
            Revocation::Account { .. } => Self::ACCOUNT_GONE,
            Revocation::Password { .. } => Self::RESET,
            Revocation::Token { .. } | Revocation::Sessions { .. } => Self::NOT_AUTHORIZED,
        };
        // An account's deletion outranks whatever was set before (nothing is written for it).
        self.0.fetch_max(v, Ordering::AcqRel);
    }

    /// The stream error to close with, once revoked.
    pub fn condition(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            Self::RESET => Some("reset"),
            _ => Some("not-authorized"),
        }
    }

    /// The account itself was deleted: nothing more may be written for it.
    pub fn account_gone(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::ACCOUNT_GONE
    }
}

/// A new connection asking a parked stream-management session to continue on it. The hub only
/// carries it from the new connection's task to the parked one: `T` is the adapter's transport,
/// which the hub never looks into.
pub struct ResumeRequest<T> {
    pub transport: T,
    /// The client's count of stanzas it received.
    pub h: u32,
    /// How the new connection authenticated.
    pub auth: ChatAuth,
}

/// Handed to a parked stream-management session to resume it on a new connection.
pub type ResumeSender<T> = mpsc::Sender<ResumeRequest<T>>;

struct Conn {
    id: ConnId,
    resource: String,
    tx: mpsc::Sender<Outbound>,
    /// How the stream authenticated: what a revocation must match.
    auth: ChatAuth,
    revoked: Revoked,
    available: bool,
    carbons: bool,
    active: bool,
    /// The entity-capabilities hash (XEP-0115 `ver`) of the connection's last available
    /// presence: what it wants notified (XEP-0163 `+notify`) is looked up by it.
    caps: Option<Arc<str>>,
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
    /// The XEP-0115 `ver` of its last available presence, if any.
    pub caps: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    users: HashMap<UserKey, Vec<Conn>>,
    next_id: ConnId,
    /// Status streaming: target → the connections subscribed to it.
    status_subscribers: HashMap<UserKey, HashSet<(UserKey, ConnId)>>,
    /// The same subscriptions by subscribing connection (bounded per connection; all of a
    /// connection's go when it is unregistered).
    status_by_conn: HashMap<ConnId, HashSet<UserKey>>,
    /// Parked sessions by stream-management id: the owner, and a [`ResumeSender`] of the
    /// adapter's transport type (stored without it, so the hub names no adapter type).
    resumable: HashMap<String, (UserKey, Box<dyn Any + Send>)>,
    /// Streams authenticated but not bound yet: revocations reach them too.
    pending: HashMap<u64, (UserKey, ChatAuth, Revoked)>,
    next_pending: u64,
}

/// A stream between SASL success and the end of negotiation, known to the hub so that a
/// revocation in that window is not missed; removed when dropped.
pub struct PendingAuth {
    hub: Arc<Hub>,
    id: u64,
    pub user: UserKey,
    pub auth: ChatAuth,
    pub revoked: Revoked,
}

impl Drop for PendingAuth {
    fn drop(&mut self) {
        self.hub.lock().pending.remove(&self.id);
    }
}

/// The registry's size: see [`Hub::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Users with at least one bound stream.
    pub users_online: usize,
    /// Bound streams (parked stream-management sessions keep theirs until they end).
    pub streams: usize,
    /// Streams past SASL, not bound yet.
    pub authenticating: usize,
    /// Stream-management sessions waiting for a resumption.
    pub parked_sessions: usize,
    /// Stanzas queued towards all streams, and towards the slowest one.
    pub queued_stanzas: usize,
    pub largest_queue: usize,
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
    /// The other nodes, when this server is one of several (`cluster.nats_url`). Unset on a
    /// single node: every delivery path checks it once (one atomic load) and goes on alone.
    cluster: OnceLock<Arc<cluster::Cluster>>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this hub one node of a cluster (once, before serving).
    pub fn join_cluster(&self, c: Arc<cluster::Cluster>) {
        let _ = self.cluster.set(c);
    }

    /// The cluster this hub is a node of, if any.
    pub fn cluster(&self) -> Option<&Arc<cluster::Cluster>> {
        self.cluster.get()
    }

    /// Registers a bound connection that authenticated with `auth`; `revoked` is marked when
    /// that credential is revoked. A connection already holding `resource` is told it was
    /// replaced (RFC 6120 §7.7.2.2: the newer stream wins) and removed.
    pub fn register(
        &self,
        user: UserKey,
        resource: &str,
        tx: mpsc::Sender<Outbound>,
        max_per_user: usize,
        auth: ChatAuth,
        revoked: Revoked,
    ) -> Result<ConnId, RegisterError> {
        self.bind(user, resource, tx, max_per_user, auth, revoked)
            .map(|(id, _)| id)
    }

    /// [`Hub::register`], also saying whether this is the user's first connection (decided
    /// under the lock, so two binds racing cannot both, or neither, be first): the
    /// `user.online` webhook event.
    pub fn bind(
        &self,
        user: UserKey,
        resource: &str,
        tx: mpsc::Sender<Outbound>,
        max_per_user: usize,
        auth: ChatAuth,
        revoked: Revoked,
    ) -> Result<(ConnId, bool), RegisterError> {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let conns = st.users.entry(user).or_default();
        let mut first = conns.is_empty();
        if let Some(pos) = conns.iter().position(|c| c.resource == resource) {
            let old = conns.remove(pos);
            let _ = old.tx.try_send(Outbound::Replaced);
        }
        if conns.len() >= max_per_user {
            return Err(RegisterError::TooManyConnections);
        }
        if let Some(c) = self.cluster.get() {
            // Announced under the registry lock, so this node's announcements of one user
            // leave in the order its binds and unbinds happened.
            first = first && !c.is_online(user);
            c.bound(user, resource);
        }
        conns.push(Conn {
            id,
            resource: resource.to_owned(),
            tx,
            auth,
            revoked,
            available: false,
            carbons: false,
            active: true,
            caps: None,
        });
        Ok((id, first))
    }

    /// Removes a connection; returns true when it was the user's last one.
    pub fn unregister(&self, user: UserKey, conn: ConnId) -> bool {
        let mut st = self.lock();
        let last = match st.users.get_mut(&user) {
            Some(conns) => {
                if let Some(c) = self.cluster.get() {
                    if let Some(gone) = conns.iter().find(|c| c.id == conn) {
                        c.unbound(user, &gone.resource);
                    }
                }
                conns.retain(|c| c.id != conn);
                conns.is_empty()
            }
            None => true,
        };
        let last = last && !self.cluster.get().is_some_and(|c| c.is_online(user));
        if last {
            st.users.remove(&user);
        }
        for target in st.status_by_conn.remove(&conn).unwrap_or_default() {
            if let Some(subs) = st.status_subscribers.get_mut(&target) {
                subs.remove(&(user, conn));
                if subs.is_empty() {
                    st.status_subscribers.remove(&target);
                }
            }
        }
        last
    }

    /// **The fan-out entry point**: queues `stanza` (already addressed) to every connection of
    /// `user`, on this node and on the others; returns how many took it (a session on another
    /// node counts once its node was sent the stanza). REST → XMPP pushes and 1:1 routing both
    /// use this.
    pub fn deliver_to_user(&self, user: UserKey, stanza: &Element) -> usize {
        let n = self.local_deliver_to_user(user, stanza);
        match self.cluster.get() {
            Some(c) => n + c.deliver_to_user(user, stanza),
            None => n,
        }
    }

    /// [`Hub::deliver_to_user`] to this node's connections only.
    pub fn local_deliver_to_user(&self, user: UserKey, stanza: &Element) -> usize {
        let st = self.lock();
        let Some(conns) = st.users.get(&user) else {
            return 0;
        };
        conns.iter().filter(|c| queue(c, stanza.clone())).count()
    }

    /// Like [`Hub::deliver_to_user`], but each copy is addressed to its connection's full JID
    /// (`{bare}/{resource}`), as room traffic is.
    pub fn deliver_addressed(&self, user: UserKey, bare: &str, stanza: &Element) -> usize {
        let n = self.local_deliver_addressed(user, bare, stanza);
        match self.cluster.get() {
            Some(c) => n + c.deliver_addressed(user, bare, stanza),
            None => n,
        }
    }

    /// [`Hub::deliver_addressed`] to the user's connections on other nodes only, for a caller
    /// that served this node's connections one by one. Nothing on a single node.
    pub fn deliver_addressed_elsewhere(
        &self,
        user: UserKey,
        bare: &str,
        stanza: &Element,
    ) -> usize {
        match self.cluster.get() {
            Some(c) => c.deliver_addressed(user, bare, stanza),
            None => 0,
        }
    }

    /// [`Hub::deliver_addressed`] to this node's connections only.
    pub fn local_deliver_addressed(&self, user: UserKey, bare: &str, stanza: &Element) -> usize {
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

    /// Queues `stanza` to the connection bound to `resource`, here or on another node; false
    /// when there is none.
    pub fn deliver_to_resource(&self, user: UserKey, resource: &str, stanza: Element) -> bool {
        match self.cluster.get() {
            None => self.local_deliver_to_resource(user, resource, stanza),
            Some(c) => {
                let here = self
                    .lock()
                    .users
                    .get(&user)
                    .is_some_and(|conns| conns.iter().any(|c| c.resource == resource));
                if here {
                    self.local_deliver_to_resource(user, resource, stanza)
                } else {
                    c.deliver_to_resource(user, resource, &stanza)
                }
            }
        }
    }

    /// [`Hub::deliver_to_resource`] on other nodes only: for a resource not bound here (false on
    /// a single node, or when no node holds it).
    pub fn deliver_to_resource_elsewhere(
        &self,
        user: UserKey,
        resource: &str,
        stanza: &Element,
    ) -> bool {
        self.cluster
            .get()
            .is_some_and(|c| c.deliver_to_resource(user, resource, stanza))
    }

    /// [`Hub::deliver_to_resource`] on this node only.
    pub fn local_deliver_to_resource(
        &self,
        user: UserKey,
        resource: &str,
        stanza: Element,
    ) -> bool {
        self.deliver_to_resource_conn(user, resource, stanza)
            .is_some()
    }

    /// Like [`Hub::local_deliver_to_resource`], telling which connection took it: the one a
    /// carbon copy must skip (XEP-0280 `received`), decided under the same lock as the delivery.
    /// This node only: a resource on another node is reached by [`Hub::deliver_to_resource`].
    pub fn deliver_to_resource_conn(
        &self,
        user: UserKey,
        resource: &str,
        stanza: Element,
    ) -> Option<ConnId> {
        let st = self.lock();
        st.users
            .get(&user)
            .and_then(|conns| conns.iter().find(|c| c.resource == resource))
            .filter(|c| queue(c, stanza))
            .map(|c| c.id)
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
                        caps: c.caps.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every user of `app` with a live connection, on any node (a broadcast dialog reaches
    /// them all).
    pub fn online_users(&self, app: crate::model::AppId) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .lock()
            .users
            .iter()
            .filter(|(k, conns)| k.app == app && !conns.is_empty())
            .map(|(k, _)| k.user.0)
            .collect();
        if let Some(c) = self.cluster.get() {
            out.extend(c.online_users(app));
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// The user's sessions on other nodes: (resource, available). Empty on a single node.
    pub fn remote_resources(&self, user: UserKey) -> Vec<(String, bool)> {
        self.cluster
            .get()
            .map(|c| c.resources(user))
            .unwrap_or_default()
    }

    /// Every session of this node: (user, resource, available), for another node's snapshot.
    pub(crate) fn local_sessions(&self) -> Vec<(UserKey, String, bool)> {
        let st = self.lock();
        st.users
            .iter()
            .flat_map(|(u, conns)| conns.iter().map(|c| (*u, c.resource.clone(), c.available)))
            .collect()
    }

    /// Another node bound `resource` of `user`: this node's stream holding it is replaced.
    pub(crate) fn replace_local(&self, user: UserKey, resource: &str) {
        let mut st = self.lock();
        if let Some(conns) = st.users.get_mut(&user) {
            if let Some(pos) = conns.iter().position(|c| c.resource == resource) {
                let old = conns.remove(pos);
                let _ = old.tx.try_send(Outbound::Replaced);
            }
            if conns.is_empty() {
                st.users.remove(&user);
            }
        }
    }

    /// (users online, bound sessions) now, for the metrics. Walks every user under the lock:
    /// called once per scrape, not per event.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.users.len(), st.users.values().map(Vec::len).sum())
    }

    /// Whether the user has a connection on this node.
    pub fn has_local(&self, user: UserKey) -> bool {
        self.lock().users.get(&user).is_some_and(|c| !c.is_empty())
    }

    /// Whether the user has a connection, on this node or (reachable) on another.
    pub fn is_online(&self, user: UserKey) -> bool {
        self.lock().users.get(&user).is_some_and(|c| !c.is_empty())
            || self.cluster.get().is_some_and(|c| c.is_online(user))
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
        let cluster = self.cluster.get();
        self.update(user, conn, |c| {
            if c.available != on {
                if let Some(cl) = cluster {
                    cl.presence(user, &c.resource, on);
                }
            }
            c.available = on;
        });
    }

    pub fn set_carbons(&self, user: UserKey, conn: ConnId, on: bool) {
        self.update(user, conn, |c| c.carbons = on);
    }

    /// The connection's entity-capabilities hash (XEP-0115); returns the previous one.
    pub fn set_caps(
        &self,
        user: UserKey,
        conn: ConnId,
        caps: Option<Arc<str>>,
    ) -> Option<Arc<str>> {
        let mut old = None;
        self.update(user, conn, |c| old = std::mem::replace(&mut c.caps, caps));
        old
    }

    /// Client state (XEP-0352 / Tigase mobile v2), kept for push decisions.
    pub fn set_active(&self, user: UserKey, conn: ConnId, on: bool) {
        self.update(user, conn, |c| c.active = on);
    }

    /// `subscriber`'s connection wants (`on`) or no longer wants `target`'s last-activity
    /// changes. A connection holds at most `max` subscriptions: false when one more is refused.
    /// A connection that is not registered (any more) subscribes to nothing.
    pub fn subscribe_status(
        &self,
        target: UserKey,
        subscriber: UserKey,
        conn: ConnId,
        on: bool,
        max: usize,
    ) -> bool {
        let mut st = self.lock();
        let st = &mut *st;
        if !on {
            if let Some(targets) = st.status_by_conn.get_mut(&conn) {
                targets.remove(&target);
                if targets.is_empty() {
                    st.status_by_conn.remove(&conn);
                }
            }
            if let Some(subs) = st.status_subscribers.get_mut(&target) {
                subs.remove(&(subscriber, conn));
                if subs.is_empty() {
                    st.status_subscribers.remove(&target);
                }
            }
            return true;
        }
        let registered = st
            .users
            .get(&subscriber)
            .is_some_and(|conns| conns.iter().any(|c| c.id == conn));
        if !registered {
            return true;
        }
        let targets = st.status_by_conn.entry(conn).or_default();
        if !targets.contains(&target) && targets.len() >= max {
            return false;
        }
        targets.insert(target);
        st.status_subscribers
            .entry(target)
            .or_default()
            .insert((subscriber, conn));
        true
    }

    /// The registry's size now, for operators (`GET /stats` on the admin listener). One pass
    /// under the lock; no user is named.
    pub fn stats(&self) -> HubStats {
        let st = self.lock();
        let mut out = HubStats {
            users_online: st.users.values().filter(|c| !c.is_empty()).count(),
            authenticating: st.pending.len(),
            parked_sessions: st.resumable.len(),
            ..HubStats::default()
        };
        for c in st.users.values().flatten() {
            let queued = c.tx.max_capacity().saturating_sub(c.tx.capacity());
            out.streams += 1;
            out.queued_stanzas += queued;
            out.largest_queue = out.largest_queue.max(queued);
        }
        out
    }

    /// Status-streaming bookkeeping now: (targets watched, subscriptions held). For tests and
    /// diagnostics: both fall back to zero when every subscribing connection has ended.
    pub fn status_subscription_counts(&self) -> (usize, usize) {
        let st = self.lock();
        (
            st.status_subscribers.len(),
            st.status_by_conn.values().map(HashSet::len).sum(),
        )
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
    pub fn park_resumable<T: Send + 'static>(&self, id: &str, user: UserKey, tx: ResumeSender<T>) {
        self.lock()
            .resumable
            .insert(id.to_owned(), (user, Box::new(tx)));
    }

    /// Takes the parked session `id` if it belongs to `user` (and was parked with a sender of
    /// this transport type, which an adapter's own sessions always are).
    pub fn take_resumable<T: Send + 'static>(
        &self,
        id: &str,
        user: UserKey,
    ) -> Option<ResumeSender<T>> {
        let mut st = self.lock();
        match st.resumable.get(id) {
            Some((owner, tx)) if *owner == user && tx.is::<ResumeSender<T>>() => {
                let (_, tx) = st.resumable.remove(id)?;
                tx.downcast::<ResumeSender<T>>().ok().map(|tx| *tx)
            }
            _ => None,
        }
    }

    pub fn forget_resumable(&self, id: &str) {
        self.lock().resumable.remove(id);
    }

    /// Records a stream that has just authenticated as `user` with `auth`.
    pub fn authenticated(self: &Arc<Self>, user: UserKey, auth: ChatAuth) -> PendingAuth {
        let revoked = Revoked::default();
        let mut st = self.lock();
        st.next_pending += 1;
        let id = st.next_pending;
        st.pending.insert(id, (user, auth, revoked.clone()));
        drop(st);
        PendingAuth {
            hub: self.clone(),
            id,
            user,
            auth,
            revoked,
        }
    }

    /// A resumed stream rests on the credentials it resumed with.
    pub fn set_auth(&self, user: UserKey, conn: ConnId, auth: ChatAuth) {
        self.update(user, conn, |c| c.auth = auth);
    }

    /// **Closes the streams a revocation covers**, parked stream-management sessions included
    /// (their connections stay registered until they end): each is marked and woken. Returns
    /// how many were.
    pub fn close_revoked(&self, r: &Revocation) -> usize {
        let (app, user) = r.user();
        let key = UserKey { app, user };
        let st = self.lock();
        let mut n = 0;
        for (_, (_, _, revoked)) in st
            .pending
            .iter()
            .filter(|(_, (u, auth, _))| *u == key && r.covers(*auth))
        {
            revoked.set(r);
            n += 1;
        }
        for c in st.users.get(&key).into_iter().flatten() {
            if r.covers(c.auth) {
                c.revoked.set(r);
                let _ = c.tx.try_send(Outbound::Revoked);
                n += 1;
            }
        }
        n
    }
}

impl Revoker for Hub {
    fn revoke(&self, r: &Revocation) {
        let n = self.close_revoked(r);
        if n > 0 {
            tracing::info!(streams = n, revocation = ?r, "closing revoked streams");
        }
    }
}

fn queue(c: &Conn, stanza: Element) -> bool {
    match c.tx.try_send(Outbound::Stanza(Box::new(stanza))) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!(QUEUE_DROPS, "queue" => "outbound").increment(1);
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

    #[test]
    fn a_parked_session_is_taken_once_and_only_by_its_owner() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel::<ResumeRequest<&'static str>>(1);
        hub.park_resumable("sm1", key(1), tx);
        assert!(hub.take_resumable::<&str>("sm1", key(2)).is_none());
        assert!(hub.take_resumable::<&str>("other", key(1)).is_none());
        assert!(hub.take_resumable::<&str>("sm1", key(1)).is_some());
        assert!(hub.take_resumable::<&str>("sm1", key(1)).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_panicking_while_holding_the_registry_lock_leaves_it_serving() {
        let hub = std::sync::Arc::new(Hub::new());
        let (tx, _rx) = mpsc::channel(4);
        hub.register(
            key(1),
            "a",
            tx.clone(),
            10,
            ChatAuth::Password,
            Revoked::default(),
        )
        .unwrap();
        let h = hub.clone();
        let task = tokio::spawn(async move {
            let _held = h.lock();
            panic!("a connection task's bug");
        });
        // The panic ends that task only, and poisons the mutex...
        assert!(task.await.unwrap_err().is_panic());
        assert!(hub.state.is_poisoned());
        // ...which every later user of the registry shrugs off.
        hub.register(key(2), "b", tx, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        assert_eq!(hub.connections(key(1)).len(), 1);
        assert_eq!(hub.connections(key(2)).len(), 1);
    }

    #[test]
    fn same_resource_twice_replaces_the_older_connection() {
        let hub = Hub::new();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, _rx2) = mpsc::channel(4);
        hub.register(key(1), "r", tx1, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        hub.register(key(1), "r", tx2, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        assert!(matches!(rx1.try_recv(), Ok(Outbound::Replaced)));
        assert_eq!(hub.connections(key(1)).len(), 1);
    }

    #[test]
    fn connections_per_user_are_capped() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel(4);
        hub.register(
            key(1),
            "a",
            tx.clone(),
            1,
            ChatAuth::Password,
            Revoked::default(),
        )
        .unwrap();
        assert_eq!(
            hub.register(key(1), "b", tx, 1, ChatAuth::Password, Revoked::default()),
            Err(RegisterError::TooManyConnections)
        );
    }

    #[test]
    fn status_subscriptions_are_bounded_per_connection_and_end_with_it() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel(4);
        let conn = hub
            .register(key(1), "a", tx, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        assert!(hub.subscribe_status(key(2), key(1), conn, true, 2));
        assert!(hub.subscribe_status(key(3), key(1), conn, true, 2));
        assert!(
            hub.subscribe_status(key(3), key(1), conn, true, 2),
            "again is no more"
        );
        assert!(!hub.subscribe_status(key(4), key(1), conn, true, 2));
        assert_eq!(hub.status_subscription_counts(), (2, 2));
        hub.unregister(key(1), conn);
        assert_eq!(hub.status_subscription_counts(), (0, 0));
        assert!(hub.subscribe_status(key(2), key(1), conn, true, 2));
        assert_eq!(
            hub.status_subscription_counts(),
            (0, 0),
            "an ended connection"
        );
    }

    #[test]
    fn deliver_to_user_reaches_every_connection() {
        let hub = Hub::new();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        hub.register(key(1), "a", tx1, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        hub.register(key(1), "b", tx2, 10, ChatAuth::Password, Revoked::default())
            .unwrap();
        let n = hub.deliver_to_user(key(1), &Element::new("message", "jabber:client"));
        assert_eq!(n, 2);
        assert!(rx1.try_recv().is_ok() && rx2.try_recv().is_ok());
        assert_eq!(hub.deliver_to_user(key(2), &Element::new("m", "x")), 0);
    }

    #[test]
    fn a_revocation_marks_and_wakes_only_the_connections_resting_on_it() {
        let hub = Hub::new();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (m1, m2) = (Revoked::default(), Revoked::default());
        let token = [7u8; 32];
        hub.register(key(1), "a", tx1, 10, ChatAuth::Token(token), m1.clone())
            .unwrap();
        hub.register(key(1), "b", tx2, 10, ChatAuth::Password, m2.clone())
            .unwrap();
        let r = Revocation::Token {
            app: AppId(1),
            user: UserId(1),
            token,
        };
        assert_eq!(hub.close_revoked(&r), 1);
        assert_eq!(m1.condition(), Some("not-authorized"));
        assert!(matches!(rx1.try_recv(), Ok(Outbound::Revoked)));
        assert_eq!(m2.condition(), None);
        assert!(rx2.try_recv().is_err());
    }
}
