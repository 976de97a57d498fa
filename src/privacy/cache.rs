//! The per-user privacy cache: each user's rules in memory (loaded on first use, dropped on
//! every change), the XEP-0016 active list of each connection and the connections that read
//! the XEP-0191 block list. Must not decide anything (that is `rules` and `privacy::decision`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::rules::{RosterView, Rules};
use super::Env;
use crate::db::{self, DbError, DbPool};
use crate::hub::{ConnId, Hub};
use crate::model::jid::Jid;
use crate::model::UserKey;

/// Users whose rules the cache holds before it starts over (users without any privacy data
/// share one empty entry, so this is mostly keys).
const CACHE_USERS: usize = 1_000_000;

#[derive(Default)]
struct CacheState {
    /// Bumped by every change, so a load that raced with a change is not kept.
    generation: u64,
    users: HashMap<UserKey, Arc<Rules>>,
    /// XEP-0016 active lists: (connection, list name), most recent last.
    active: HashMap<UserKey, Vec<(ConnId, String)>>,
    /// Connections that asked for the XEP-0191 block list (they get its pushes).
    blocklist_readers: HashSet<(UserKey, ConnId)>,
}

/// Per-user privacy rules in memory. One per server (the XMPP adapter keeps it in its `Services`).
#[derive(Default)]
pub struct PrivacyCache {
    state: Mutex<CacheState>,
    /// Shared by every user without lists or blocked JIDs.
    empty: Arc<Rules>,
}

impl PrivacyCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the user's cached rules; call after every change to the user's lists, block list
    /// or roster.
    pub fn forget(&self, user: UserKey) {
        let mut st = self.lock();
        st.generation = st.generation.wrapping_add(1);
        st.users.remove(&user);
    }

    /// The user's rules, from the cache or the database.
    pub async fn rules(&self, pool: &DbPool, user: UserKey) -> Result<Arc<Rules>, DbError> {
        let generation = {
            let st = self.lock();
            if let Some(r) = st.users.get(&user) {
                return Ok(r.clone());
            }
            st.generation
        };
        let stored = db::privacy::load(pool, user.app, user.user).await?;
        let mut roster = RosterView::new();
        if Rules::needs_roster(&stored) {
            for i in db::xmpp::roster_list(pool, user.app, user.user).await? {
                let key = Jid::parse(&i.contact).map_or(i.contact, |j| j.to_string());
                roster.insert(key, (i.subscription, i.groups));
            }
        }
        let rules = if stored.lists.is_empty() && stored.blocked.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(Rules::from_stored(stored, roster))
        };
        let mut st = self.lock();
        if st.generation == generation {
            if st.users.len() >= CACHE_USERS {
                st.users.clear();
            }
            st.users.insert(user, rules.clone());
        }
        Ok(rules)
    }

    /// The change counter, read before probing storage for [`PrivacyCache::note_empty`].
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Storage said (under `generation`) that the user has no lists and no blocked JIDs: cache
    /// the shared empty rules without loading them, unless something changed since.
    pub fn note_empty(&self, user: UserKey, generation: u64) {
        let mut st = self.lock();
        if st.generation == generation && !st.users.contains_key(&user) {
            if st.users.len() >= CACHE_USERS {
                st.users.clear();
            }
            let empty = self.empty.clone();
            st.users.insert(user, empty);
        }
    }

    /// Loads the user's rules ahead of need (at bind), so that routing to and from an online
    /// user, group fan-out above all, finds them in memory.
    pub async fn warm<E: Env + ?Sized>(env: Arc<E>, user: UserKey) {
        if let Err(e) = env.privacy_cache().rules(env.pool(), user).await {
            tracing::warn!(error = %e, "loading privacy rules");
        }
    }

    /// Rules for enforcement: on a storage failure, nothing is denied (and it is logged).
    pub(super) async fn rules_or_none(&self, pool: &DbPool, user: UserKey) -> Arc<Rules> {
        match self.rules(pool, user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading privacy rules; not enforcing them");
                Arc::new(Rules::default())
            }
        }
    }

    /// The list name active on a live connection of `user`, most recently set first.
    pub(super) fn active_list(&self, hub: &Hub, user: UserKey) -> Option<String> {
        let entries = self.lock().active.get(&user).cloned()?;
        let live = hub.connections(user);
        entries
            .into_iter()
            .rev()
            .find(|(c, _)| live.iter().any(|l| l.id == *c))
            .map(|(_, n)| n)
    }

    pub fn active_of(&self, user: UserKey, conn: ConnId) -> Option<String> {
        let st = self.lock();
        let entries = st.active.get(&user)?;
        entries
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, n)| n.clone())
    }

    /// Whether a live connection other than `conn` has `name` active.
    pub fn active_elsewhere(&self, hub: &Hub, user: UserKey, conn: ConnId, name: &str) -> bool {
        let entries = self.lock().active.get(&user).cloned().unwrap_or_default();
        let live = hub.connections(user);
        entries
            .iter()
            .any(|(c, n)| *c != conn && n == name && live.iter().any(|l| l.id == *c))
    }

    pub fn set_active(&self, hub: &Hub, user: UserKey, conn: ConnId, name: Option<String>) {
        let live: Vec<ConnId> = hub.connections(user).iter().map(|c| c.id).collect();
        let mut st = self.lock();
        let entries = st.active.entry(user).or_default();
        entries.retain(|(c, _)| *c != conn && live.contains(c));
        if let Some(n) = name {
            entries.push((conn, n));
        }
        if entries.is_empty() {
            st.active.remove(&user);
        }
    }

    /// Records that `conn` asked for the block list (XEP-0191 pushes go to such connections).
    pub fn read_blocklist(&self, hub: &Hub, user: UserKey, conn: ConnId) {
        let live: Vec<ConnId> = hub.connections(user).iter().map(|c| c.id).collect();
        let mut st = self.lock();
        st.blocklist_readers
            .retain(|(u, c)| *u != user || live.contains(c));
        st.blocklist_readers.insert((user, conn));
    }

    /// The live connections of `user` that asked for the block list.
    pub fn blocklist_readers(&self, hub: &Hub, user: UserKey) -> Vec<(ConnId, String)> {
        let st = self.lock();
        hub.connections(user)
            .into_iter()
            .filter(|c| st.blocklist_readers.contains(&(user, c.id)))
            .map(|c| (c.id, c.resource))
            .collect()
    }

    /// A connection ended: its active list and block-list interest go with it (otherwise they
    /// stay until the same user changes either again, one entry per user who ever did).
    pub fn connection_ended(&self, user: UserKey, conn: ConnId) {
        let mut st = self.lock();
        if let Some(entries) = st.active.get_mut(&user) {
            entries.retain(|(c, _)| *c != conn);
            if entries.is_empty() {
                st.active.remove(&user);
            }
        }
        st.blocklist_readers.remove(&(user, conn));
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

    /// The login probe found no lists: the empty rules are cached without a read, but not when
    /// any change happened between the probe and caching (the probe may be stale).
    #[test]
    fn an_empty_probe_is_cached_unless_a_change_raced_with_it() {
        let cache = PrivacyCache::new();
        let g = cache.generation();
        cache.note_empty(key(1), g);
        assert!(cache.lock().users.contains_key(&key(1)));
        let g = cache.generation();
        cache.forget(key(3)); // a list or roster change lands while the probe runs
        cache.note_empty(key(2), g);
        assert!(!cache.lock().users.contains_key(&key(2)));
    }
}
