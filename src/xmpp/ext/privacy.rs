//! XEP-0016 Privacy Lists (`jabber:iq:privacy`), as the official ConnectyCube SDK uses them, and
//! the one place where privacy is enforced for every XEP (this one and XEP-0191 blocking).
//!
//! Lists: get names (`<active>`, `<default>`, `<list>`), get one list, create/replace a list,
//! delete one (an empty `<list name/>`), set or decline the default (per user) and the active
//! list (per connection). Each change is pushed to the user's connections. Following
//! ConnectyCube, the current default list can be neither edited nor deleted (`conflict`): a
//! client first declines the default (`<default/>`), edits, then sets the default again.
//!
//! Enforcement: `screen` (1:1 messages, directed presence, iqs to a user), `presence_allowed` (roster presence
//! broadcast and probes) and `blocks_group_message` (group chat) read a per-user in-memory cache (`PrivacyCache`), loaded from the database on first use
//! and dropped on every change, so routing does not query the database per stanza. A user's
//! effective list is the list most recently made active by one of the user's live connections,
//! else the default list. An item without child elements (the SDK's `mutualBlock`) that denies
//! a JID also refuses the owner's own messages to that JID.
//!
//! Must not: reveal a block to the blocked user (inbound refusals are a plain
//! `service-unavailable`), apply one user's lists to another user's traffic, or touch users of
//! another application. Not done: subscription presences, and the XEP-0016
//! "default in use by another resource" conflict.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::db::privacy::{Action, Kinds, Matcher, PrivacyItem, Stored};
use crate::db::{self, DbError};
use crate::hub::ConnId;
use crate::xmpp::dispatch::{BoxFuture, Kind, Registration, Reply, Request};
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, Jid, StanzaError, UserKey};
use crate::xmpp::stream::{Element, Node};
use crate::xmpp::Services;

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::PRIVACY,
        handler: Some(get),
        features: &[ns::PRIVACY],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::PRIVACY,
        handler: Some(set),
        features: &[],
        for_users: false,
    },
];

/// Users whose rules the cache holds before it starts over (users without any privacy data
/// share one empty entry, so this is mostly keys).
const CACHE_USERS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Rules and their evaluation (pure).

/// A user's roster as the `group` and `subscription` items see it: bare JID → (subscription,
/// groups).
type RosterView = HashMap<String, (String, Vec<String>)>;

/// Everything about one user's privacy, as enforced.
#[derive(Debug, Default)]
pub struct Rules {
    pub lists: BTreeMap<String, Vec<PrivacyItem>>,
    pub default: Option<String>,
    /// XEP-0191 block list (normalised JIDs).
    pub blocked: BTreeSet<String>,
    /// Loaded only when a list has `group` or `subscription` items.
    roster: RosterView,
}

impl Rules {
    fn from_stored(s: Stored, roster: RosterView) -> Rules {
        Rules {
            lists: s.lists,
            default: s.default,
            blocked: s.blocked.into_iter().collect(),
            roster,
        }
    }
}

/// Who a stanza comes from or goes to, as the matching rules see it: the JIDs an item `value`
/// may equal (XEP-0016 §2.1: full, bare, domain/resource, domain) and the roster key.
pub struct Subject {
    candidates: Vec<String>,
    roster_key: Option<String>,
}

impl Subject {
    pub fn of_jid(jid: &Jid) -> Subject {
        let mut candidates = vec![jid.to_string()];
        let domain = jid.domain.clone();
        if jid.resource.is_some() && jid.local.is_some() {
            candidates.push(jid.bare().to_string());
        }
        if let (Some(r), Some(_)) = (&jid.resource, &jid.local) {
            candidates.push(format!("{domain}/{r}"));
        }
        if jid.local.is_some() || jid.resource.is_some() {
            candidates.push(domain);
        }
        let roster_key = jid.local.as_ref().map(|_| jid.bare().to_string());
        Subject {
            candidates,
            roster_key,
        }
    }

    pub fn of_user(user: UserKey, domain: &str) -> Subject {
        Subject::of_jid(&user.bare_jid(domain))
    }

    /// Adds another JID the same party is known by (a group occupant JID).
    fn also(mut self, jid: &Jid) -> Subject {
        for c in Subject::of_jid(jid).candidates {
            if !self.candidates.contains(&c) {
                self.candidates.push(c);
            }
        }
        self
    }

    fn is(&self, value: &str) -> bool {
        self.candidates.iter().any(|c| c == value)
    }
}

/// Which traffic an evaluation is about, from the list owner's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Stanzas coming to the owner: one of `Kinds::MESSAGE`, `PRESENCE_IN`, `IQ`.
    Inbound(u8),
    /// Presence the owner sends (`presence-out` items and items without children).
    PresenceOut,
    /// Messages and iqs the owner sends: only items without children (mutual block) apply.
    StanzaOut,
}

fn applies(kinds: Kinds, traffic: Traffic) -> bool {
    kinds == Kinds::ALL
        || match traffic {
            Traffic::Inbound(bit) => kinds.0 & bit != 0,
            Traffic::PresenceOut => kinds.0 & Kinds::PRESENCE_OUT != 0,
            Traffic::StanzaOut => false,
        }
}

fn matches(m: &Matcher, who: &Subject, roster: &RosterView) -> bool {
    let entry = who.roster_key.as_ref().and_then(|k| roster.get(k));
    match m {
        Matcher::Any => true,
        Matcher::Jid(v) => who.is(v),
        Matcher::Group(g) => entry.is_some_and(|(_, groups)| groups.contains(g)),
        Matcher::Subscription(s) => entry.map_or("none", |(sub, _)| sub.as_str()) == s,
    }
}

/// XEP-0016 §2.1: the items that apply to this traffic, in order; the first that matches
/// decides; none matching allows.
pub fn evaluate(
    items: &[PrivacyItem],
    who: &Subject,
    traffic: Traffic,
    roster: &RosterView,
) -> Action {
    items
        .iter()
        .filter(|i| applies(i.kinds, traffic))
        .find(|i| matches(&i.matcher, who, roster))
        .map_or(Action::Allow, |i| i.action)
}

impl Rules {
    /// Whether the owner (with `active` as the effective list name, if any) refuses `traffic`
    /// with `who`. The block list comes first and covers everything.
    fn denies(&self, active: Option<&str>, who: &Subject, traffic: Traffic) -> bool {
        if who.candidates.iter().any(|c| self.blocked.contains(c)) {
            return true;
        }
        let name = active.or(self.default.as_deref());
        let Some(items) = name.and_then(|n| self.lists.get(n)) else {
            return false;
        };
        evaluate(items, who, traffic, &self.roster) == Action::Deny
    }

    fn needs_roster(s: &Stored) -> bool {
        s.lists
            .values()
            .flatten()
            .any(|i| matches!(i.matcher, Matcher::Group(_) | Matcher::Subscription(_)))
    }
}

// ---------------------------------------------------------------------------------------------
// The cache.

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

/// Per-user privacy rules in memory. One per server, in `Services`.
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
    pub async fn rules(&self, services: &Services, user: UserKey) -> Result<Arc<Rules>, DbError> {
        let generation = {
            let st = self.lock();
            if let Some(r) = st.users.get(&user) {
                return Ok(r.clone());
            }
            st.generation
        };
        let stored = db::privacy::load(&services.pool, user.app, user.user).await?;
        let mut roster = RosterView::new();
        if Rules::needs_roster(&stored) {
            for i in db::xmpp::roster_list(&services.pool, user.app, user.user).await? {
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
    pub async fn warm(services: Arc<Services>, user: UserKey) {
        if let Err(e) = services.privacy.rules(&services, user).await {
            tracing::warn!(error = %e, "loading privacy rules");
        }
    }

    /// Rules for enforcement: on a storage failure, nothing is denied (and it is logged).
    async fn rules_or_none(&self, services: &Services, user: UserKey) -> Arc<Rules> {
        match self.rules(services, user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading privacy rules; not enforcing them");
                Arc::new(Rules::default())
            }
        }
    }

    /// The list name active on a live connection of `user`, most recently set first.
    fn active_list(&self, services: &Services, user: UserKey) -> Option<String> {
        let entries = self.lock().active.get(&user).cloned()?;
        let live = services.hub.connections(user);
        entries
            .into_iter()
            .rev()
            .find(|(c, _)| live.iter().any(|l| l.id == *c))
            .map(|(_, n)| n)
    }

    fn active_of(&self, user: UserKey, conn: ConnId) -> Option<String> {
        let st = self.lock();
        let entries = st.active.get(&user)?;
        entries
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, n)| n.clone())
    }

    /// Whether a live connection other than `conn` has `name` active.
    fn active_elsewhere(
        &self,
        services: &Services,
        user: UserKey,
        conn: ConnId,
        name: &str,
    ) -> bool {
        let entries = self.lock().active.get(&user).cloned().unwrap_or_default();
        let live = services.hub.connections(user);
        entries
            .iter()
            .any(|(c, n)| *c != conn && n == name && live.iter().any(|l| l.id == *c))
    }

    fn set_active(&self, services: &Services, user: UserKey, conn: ConnId, name: Option<String>) {
        let live: Vec<ConnId> = services
            .hub
            .connections(user)
            .iter()
            .map(|c| c.id)
            .collect();
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
    pub fn read_blocklist(&self, services: &Services, user: UserKey, conn: ConnId) {
        let live: Vec<ConnId> = services
            .hub
            .connections(user)
            .iter()
            .map(|c| c.id)
            .collect();
        let mut st = self.lock();
        st.blocklist_readers
            .retain(|(u, c)| *u != user || live.contains(c));
        st.blocklist_readers.insert((user, conn));
    }

    /// The live connections of `user` that asked for the block list.
    pub fn blocklist_readers(&self, services: &Services, user: UserKey) -> Vec<(ConnId, String)> {
        let st = self.lock();
        services
            .hub
            .connections(user)
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

// ---------------------------------------------------------------------------------------------
// Enforcement: the one place.

/// The stanza kinds privacy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stanza {
    Message,
    Presence,
    Iq,
}

/// What privacy says about one stanza between two users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The recipient's list or block list refuses the sender.
    Refused,
    /// The sender's own block list or mutual block covers the recipient.
    Blocked,
}

/// Whether `sender` may send a `kind` stanza to `recipient` (both of one application).
pub async fn decision(
    services: &Services,
    sender: UserKey,
    recipient: UserKey,
    kind: Stanza,
) -> Decision {
    if sender == recipient {
        return Decision::Allow;
    }
    let cache = &services.privacy;
    let domain = services.domain();
    let inbound = match kind {
        Stanza::Message => Traffic::Inbound(Kinds::MESSAGE),
        Stanza::Presence => Traffic::Inbound(Kinds::PRESENCE_IN),
        Stanza::Iq => Traffic::Inbound(Kinds::IQ),
    };
    let theirs = cache.rules_or_none(services, recipient).await;
    let active = active_if_any(services, recipient, &theirs);
    if theirs.denies(
        active.as_deref(),
        &Subject::of_user(sender, domain),
        inbound,
    ) {
        return Decision::Refused;
    }
    let outbound = match kind {
        Stanza::Message | Stanza::Iq => Traffic::StanzaOut,
        Stanza::Presence => Traffic::PresenceOut,
    };
    let mine = cache.rules_or_none(services, sender).await;
    let active = active_if_any(services, sender, &mine);
    if mine.denies(
        active.as_deref(),
        &Subject::of_user(recipient, domain),
        outbound,
    ) {
        return Decision::Blocked;
    }
    Decision::Allow
}

/// The active list only matters when the user has lists at all (saves a hub lookup).
fn active_if_any(services: &Services, user: UserKey, rules: &Rules) -> Option<String> {
    if rules.lists.is_empty() {
        None
    } else {
        services.privacy.active_list(services, user)
    }
}

/// Routing's entry point for a 1:1 message, a directed presence or an iq to a user from `sender` (whose full JID
/// is already the stanza's `from`) to `recipient`. `Ok(())`: deliver. `Err(Some(bounce))`: drop
/// it and send `bounce` back to the sender. `Err(None)`: drop it silently (presence, errors,
/// iq results).
pub async fn screen(
    services: &Services,
    sender: UserKey,
    recipient: UserKey,
    kind: Stanza,
    stanza: &Element,
) -> Result<(), Option<Element>> {
    let d = decision(services, sender, recipient, kind).await;
    if d == Decision::Allow {
        return Ok(());
    }
    let answer = matches!(stanza.attr("type"), Some("error" | "result")) && kind == Stanza::Iq;
    if kind == Stanza::Presence || stanza.attr("type") == Some("error") || answer {
        return Err(None);
    }
    Err(Some(bounce(d, stanza, services.domain())))
}

/// The error a refused message earns: `service-unavailable` when the recipient refuses (as if
/// the recipient were not there, XEP-0016 §2.13 / XEP-0191 §3.3); `not-acceptable` with
/// `<blocked xmlns='urn:xmpp:blocking:errors'/>` when the sender blocked the recipient
/// (XEP-0191 §3.3).
pub fn bounce(d: Decision, stanza: &Element, domain: &str) -> Element {
    match d {
        Decision::Blocked => {
            let err = StanzaError {
                kind: "cancel",
                condition: "not-acceptable",
                code: 406,
                text: None,
            };
            let mut reply = err.reply_to(stanza, domain);
            if let Some(Node::Element(e)) = reply.children.last_mut() {
                e.push(Element::new("blocked", ns::BLOCKING_ERRORS));
            }
            reply
        }
        _ => StanzaError::service_unavailable().reply_to(stanza, domain),
    }
}

/// Of `contacts`, those that may exchange presence with `user` in the direction given:
/// `outbound` — `user`'s presence to them; else theirs to `user`. For roster presence broadcast
/// and the probes at initial presence.
pub async fn presence_allowed(
    services: &Services,
    user: UserKey,
    contacts: Vec<UserKey>,
    outbound: bool,
) -> Vec<UserKey> {
    let mut out = Vec::with_capacity(contacts.len());
    for c in contacts {
        let (from, to) = if outbound { (user, c) } else { (c, user) };
        if decision(services, from, to, Stanza::Presence).await == Decision::Allow {
            out.push(c);
        }
    }
    out
}

/// The JIDs a group message's sender is known by: the user JID and the occupant pseudo-JID
/// `muc.{domain}/{uid}` (which also matches an occupant JID `room@muc.{domain}/{uid}`).
fn group_sender(sender: UserKey, domain: &str) -> Subject {
    let occupant = Jid {
        local: None,
        domain: format!("muc.{domain}"),
        resource: Some(sender.user.to_string()),
    };
    Subject::of_user(sender, domain).also(&occupant)
}

/// For group-chat routing: true when `recipient` must not get a group message from `sender`.
/// That is when the recipient's block list or effective privacy list denies messages from the
/// sender's group pseudo-JID `muc.{domain}/{sender_uid}` (what the ConnectyCube SDK writes) or
/// from the sender's user JID `{uid}-{app}@{domain}`; or when the sender blocked the recipient
/// (block list, or a list item without children: the SDK's `mutualBlock`). Never true for the
/// sender's own reflection. The sender gets no error (ConnectyCube: "nothing in groups").
/// Reads the in-memory cache; the database only on a user's first use.
pub async fn blocks_group_message(
    services: &Services,
    recipient: UserKey,
    sender: UserKey,
) -> bool {
    if recipient == sender {
        return false;
    }
    let domain = services.domain();
    let cache = &services.privacy;
    let who = group_sender(sender, domain);
    let theirs = cache.rules_or_none(services, recipient).await;
    let active = active_if_any(services, recipient, &theirs);
    if theirs.denies(active.as_deref(), &who, Traffic::Inbound(Kinds::MESSAGE)) {
        return true;
    }
    let mine = cache.rules_or_none(services, sender).await;
    let active = active_if_any(services, sender, &mine);
    mine.denies(
        active.as_deref(),
        &Subject::of_user(recipient, domain),
        Traffic::StanzaOut,
    )
}

// ---------------------------------------------------------------------------------------------
// The iq handlers.

pub(crate) fn internal(e: DbError) -> StanzaError {
    tracing::warn!(error = %e, "privacy storage");
    StanzaError::internal_server_error()
}

fn list_element(name: &str, items: &[PrivacyItem]) -> Element {
    let mut l = Element::new("list", ns::PRIVACY).with_attr("name", name);
    for i in items {
        let mut e = Element::new("item", ns::PRIVACY);
        match &i.matcher {
            Matcher::Jid(v) => e = e.with_attr("type", "jid").with_attr("value", v.clone()),
            Matcher::Group(v) => e = e.with_attr("type", "group").with_attr("value", v.clone()),
            Matcher::Subscription(v) => {
                e = e
                    .with_attr("type", "subscription")
                    .with_attr("value", v.clone())
            }
            Matcher::Any => {}
        }
        e.set_attr(
            "action",
            match i.action {
                Action::Allow => "allow",
                Action::Deny => "deny",
            },
        );
        e.set_attr("order", i.order.to_string());
        for (bit, name) in KIND_NAMES {
            if i.kinds.0 & bit != 0 {
                e.push(Element::new(name, ns::PRIVACY));
            }
        }
        l.push(e);
    }
    l
}

const KIND_NAMES: [(u8, &str); 4] = [
    (Kinds::MESSAGE, "message"),
    (Kinds::PRESENCE_IN, "presence-in"),
    (Kinds::PRESENCE_OUT, "presence-out"),
    (Kinds::IQ, "iq"),
];

/// Parses one `<item/>`; `None` when malformed.
pub fn parse_item(e: &Element) -> Option<PrivacyItem> {
    if !e.is("item", ns::PRIVACY) {
        return None;
    }
    let action = match e.attr("action")? {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        _ => return None,
    };
    let order = i64::from(e.attr("order")?.trim().parse::<u32>().ok()?);
    let value = e.attr("value");
    let matcher = match e.attr("type") {
        None => Matcher::Any,
        Some("jid") => Matcher::Jid(Jid::parse(value?.trim())?.to_string()),
        Some("group") => Matcher::Group(value.filter(|v| !v.is_empty())?.to_owned()),
        Some("subscription") => match value? {
            v @ ("none" | "to" | "from" | "both") => Matcher::Subscription(v.to_owned()),
            _ => return None,
        },
        Some(_) => return None,
    };
    let mut kinds = 0u8;
    for c in e.elements() {
        if c.ns != ns::PRIVACY {
            return None;
        }
        let (bit, _) = KIND_NAMES.iter().find(|(_, n)| *n == c.name)?;
        kinds |= bit;
    }
    Some(PrivacyItem {
        order,
        matcher,
        action,
        kinds: Kinds(kinds),
    })
}

/// Parses a list's items, sorted by order; `None` when any is malformed or orders repeat.
pub fn parse_items(list: &Element) -> Option<Vec<PrivacyItem>> {
    let mut items = list
        .elements()
        .map(parse_item)
        .collect::<Option<Vec<_>>>()?;
    items.sort_by_key(|i| i.order);
    if items.windows(2).any(|w| w[0].order == w[1].order) {
        return None;
    }
    Some(items)
}

fn list_name(e: &Element) -> Option<&str> {
    e.attr("name").filter(|n| !n.is_empty())
}

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let s = req.services;
        let mut children = req.payload.elements();
        let rules = s.privacy.rules(s, req.user).await.map_err(internal)?;
        let mut q = Element::new("query", ns::PRIVACY);
        match (children.next(), children.next()) {
            (None, _) => {
                if let Some(a) = s.privacy.active_of(req.user, req.conn) {
                    q.push(Element::new("active", ns::PRIVACY).with_attr("name", a));
                }
                if let Some(d) = &rules.default {
                    q.push(Element::new("default", ns::PRIVACY).with_attr("name", d.clone()));
                }
                for name in rules.lists.keys() {
                    q.push(Element::new("list", ns::PRIVACY).with_attr("name", name.clone()));
                }
            }
            (Some(l), None) if l.is("list", ns::PRIVACY) => {
                let name = list_name(l).ok_or_else(StanzaError::bad_request)?;
                let items = rules
                    .lists
                    .get(name)
                    .ok_or_else(StanzaError::item_not_found)?;
                q.push(list_element(name, items));
            }
            _ => return Err(StanzaError::bad_request()),
        }
        Ok(Some(q))
    })
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let s = req.services;
        let (user, conn) = (req.user, req.conn);
        let mut children = req.payload.elements();
        let (Some(op), None) = (children.next(), children.next()) else {
            return Err(StanzaError::bad_request());
        };
        if op.ns != ns::PRIVACY {
            return Err(StanzaError::bad_request());
        }
        let rules = s.privacy.rules(s, user).await.map_err(internal)?;
        match op.name.as_str() {
            "active" => {
                let name = match list_name(op) {
                    Some(n) if rules.lists.contains_key(n) => Some(n.to_owned()),
                    Some(_) => return Err(StanzaError::item_not_found()),
                    None => None,
                };
                s.privacy.set_active(s, user, conn, name);
                Ok(None)
            }
            "default" => {
                let name = list_name(op);
                if name.is_some_and(|n| !rules.lists.contains_key(n)) {
                    return Err(StanzaError::item_not_found());
                }
                let ok = db::privacy::set_default(&s.pool, user.app, user.user, name)
                    .await
                    .map_err(internal)?;
                s.privacy.forget(user);
                if ok {
                    Ok(None)
                } else {
                    Err(StanzaError::item_not_found())
                }
            }
            "list" => {
                let name = list_name(op).ok_or_else(StanzaError::bad_request)?;
                let is_default = rules.default.as_deref() == Some(name);
                if op.elements().next().is_none() {
                    if !rules.lists.contains_key(name) {
                        return Err(StanzaError::item_not_found());
                    }
                    if is_default || s.privacy.active_elsewhere(s, user, conn, name) {
                        return Err(StanzaError::conflict()
                            .with_text("the list is in use: decline it as default first"));
                    }
                    db::privacy::delete_list(&s.pool, user.app, user.user, name)
                        .await
                        .map_err(internal)?;
                    if s.privacy.active_of(user, conn).as_deref() == Some(name) {
                        s.privacy.set_active(s, user, conn, None);
                    }
                } else {
                    let items = parse_items(op).ok_or_else(|| {
                        StanzaError::bad_request().with_text("malformed privacy list item")
                    })?;
                    let limits = &s.config.xmpp;
                    if items.len() > limits.privacy_max_items {
                        return Err(StanzaError::not_allowed().with_text("too many items"));
                    }
                    if !rules.lists.contains_key(name)
                        && rules.lists.len() >= limits.privacy_max_lists
                    {
                        return Err(StanzaError::not_allowed().with_text("too many lists"));
                    }
                    if is_default {
                        return Err(StanzaError::conflict()
                            .with_text("the default list cannot be edited: decline it first"));
                    }
                    db::privacy::put_list(&s.pool, user.app, user.user, name, &items)
                        .await
                        .map_err(internal)?;
                }
                s.privacy.forget(user);
                push(s, user, name);
                Ok(None)
            }
            _ => Err(StanzaError::bad_request()),
        }
    })
}

/// XEP-0016 §2.6 list push to every connection of `user` (without `from`: the official SDK
/// takes an iq with `from` and `<query>` for a last-activity update).
fn push(services: &Services, user: UserKey, name: &str) {
    let bare = user.bare_jid(services.domain()).to_string();
    for c in services.hub.connections(user) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", random_hex(6)))
            .with_attr("to", format!("{bare}/{}", c.resource))
            .with_child(
                Element::new("query", ns::PRIVACY)
                    .with_child(Element::new("list", ns::PRIVACY).with_attr("name", name)),
            );
        services.hub.deliver_to_conn(user, c.id, iq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: i64) -> UserKey {
        UserKey {
            app: crate::model::AppId(1),
            user: crate::model::UserId(u),
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

    fn item(order: i64, m: Matcher, action: Action, kinds: u8) -> PrivacyItem {
        PrivacyItem {
            order,
            matcher: m,
            action,
            kinds: Kinds(kinds),
        }
    }

    fn jid(s: &str) -> Matcher {
        Matcher::Jid(s.into())
    }

    fn bob() -> Subject {
        Subject::of_jid(&Jid::parse("2-7@localhost").unwrap())
    }

    const MSG: Traffic = Traffic::Inbound(Kinds::MESSAGE);
    const ALL4: u8 = 15;

    #[test]
    fn no_matching_item_allows() {
        let items = [item(1, jid("3-7@localhost"), Action::Deny, 0)];
        let r = RosterView::new();
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        assert_eq!(evaluate(&[], &bob(), MSG, &r), Action::Allow);
    }

    #[test]
    fn first_match_in_order_wins_allow_before_deny() {
        let r = RosterView::new();
        let mut items = vec![
            item(1, jid("2-7@localhost"), Action::Allow, 0),
            item(2, Matcher::Any, Action::Deny, 0),
        ];
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        let carol = Subject::of_jid(&Jid::parse("3-7@localhost").unwrap());
        assert_eq!(evaluate(&items, &carol, MSG, &r), Action::Deny);
        // Reversed order: the fall-through deny comes first and wins.
        items.reverse();
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Deny);
    }

    #[test]
    fn items_with_children_apply_only_to_those_kinds() {
        let r = RosterView::new();
        let items = [item(
            1,
            jid("2-7@localhost"),
            Action::Deny,
            Kinds::PRESENCE_IN,
        )];
        assert_eq!(evaluate(&items, &bob(), MSG, &r), Action::Allow);
        let pin = Traffic::Inbound(Kinds::PRESENCE_IN);
        assert_eq!(evaluate(&items, &bob(), pin, &r), Action::Deny);
    }

    #[test]
    fn only_items_without_children_refuse_the_owners_own_messages() {
        let r = RosterView::new();
        let deny = [item(1, jid("2-7@localhost"), Action::Deny, ALL4)];
        assert_eq!(evaluate(&deny, &bob(), MSG, &r), Action::Deny);
        assert_eq!(
            evaluate(&deny, &bob(), Traffic::StanzaOut, &r),
            Action::Allow
        );
        let mutual = [item(1, jid("2-7@localhost"), Action::Deny, 0)];
        assert_eq!(
            evaluate(&mutual, &bob(), Traffic::StanzaOut, &r),
            Action::Deny
        );
        assert_eq!(
            evaluate(&deny, &bob(), Traffic::PresenceOut, &r),
            Action::Deny
        );
    }

    #[test]
    fn jid_items_match_full_bare_domain_resource_and_domain() {
        let r = RosterView::new();
        let occ = Subject::of_jid(&Jid::parse("7_abc@muc.localhost/2").unwrap());
        for v in [
            "7_abc@muc.localhost/2",
            "7_abc@muc.localhost",
            "muc.localhost/2",
            "muc.localhost",
        ] {
            let items = [item(1, jid(v), Action::Deny, 0)];
            assert_eq!(evaluate(&items, &occ, MSG, &r), Action::Deny, "{v}");
        }
        let items = [item(1, jid("muc.localhost/3"), Action::Deny, 0)];
        assert_eq!(evaluate(&items, &occ, MSG, &r), Action::Allow);
    }

    #[test]
    fn group_and_subscription_items_read_the_roster() {
        let mut r = RosterView::new();
        r.insert(
            "2-7@localhost".into(),
            ("both".into(), vec!["friends".into()]),
        );
        let g = [item(1, Matcher::Group("friends".into()), Action::Deny, 0)];
        assert_eq!(evaluate(&g, &bob(), MSG, &r), Action::Deny);
        let s = [item(
            1,
            Matcher::Subscription("none".into()),
            Action::Deny,
            0,
        )];
        assert_eq!(evaluate(&s, &bob(), MSG, &r), Action::Allow);
        let carol = Subject::of_jid(&Jid::parse("3-7@localhost").unwrap());
        assert_eq!(evaluate(&s, &carol, MSG, &r), Action::Deny);
    }

    #[test]
    fn sdk_items_parse_and_malformed_ones_do_not() {
        let ok = Element::new("item", ns::PRIVACY)
            .with_attr("type", "jid")
            .with_attr("value", "muc.localhost/1002")
            .with_attr("action", "deny")
            .with_attr("order", "2")
            .with_child(Element::new("message", ns::PRIVACY))
            .with_child(Element::new("iq", ns::PRIVACY));
        let i = parse_item(&ok).unwrap();
        assert_eq!(i.kinds.0, Kinds::MESSAGE | Kinds::IQ);
        assert_eq!(i.matcher, jid("muc.localhost/1002"));
        let bad = [
            ok.clone().with_attr("action", "maybe"),
            ok.clone().with_attr("order", "-1"),
            ok.clone().with_attr("type", "color"),
            ok.clone().with_attr("type", "subscription"),
            ok.clone().with_child(Element::new("body", ns::PRIVACY)),
        ];
        for b in &bad {
            assert!(parse_item(b).is_none(), "{b:?}");
        }
        let dup = Element::new("list", ns::PRIVACY)
            .with_child(ok.clone())
            .with_child(ok);
        assert!(parse_items(&dup).is_none(), "repeated order");
    }

    #[test]
    fn the_sdks_list_denies_a_group_sender_by_pseudo_jid_or_user_jid() {
        use crate::model::{AppId, UserId};
        let sender = UserKey {
            app: AppId(7),
            user: UserId(2),
        };
        let other = UserKey {
            app: AppId(7),
            user: UserId(3),
        };
        let r = RosterView::new();
        let all4 = Kinds::MESSAGE | Kinds::PRESENCE_IN | Kinds::PRESENCE_OUT | Kinds::IQ;
        let sdk = [
            item(1, jid("2-7@localhost"), Action::Deny, all4),
            item(2, jid("muc.localhost/2"), Action::Deny, all4),
        ];
        let who = group_sender(sender, "localhost");
        assert_eq!(evaluate(&sdk, &who, MSG, &r), Action::Deny);
        assert_eq!(
            evaluate(&sdk[1..], &who, MSG, &r),
            Action::Deny,
            "pseudo-JID alone"
        );
        assert_eq!(
            evaluate(&sdk[..1], &who, MSG, &r),
            Action::Deny,
            "user JID alone"
        );
        let who = group_sender(other, "localhost");
        assert_eq!(evaluate(&sdk, &who, MSG, &r), Action::Allow);
    }

    #[test]
    fn the_block_list_comes_before_any_list() {
        let mut rules = Rules::default();
        rules
            .lists
            .insert("l".into(), vec![item(1, Matcher::Any, Action::Allow, 0)]);
        rules.default = Some("l".into());
        assert!(!rules.denies(None, &bob(), MSG));
        rules.blocked.insert("2-7@localhost".into());
        assert!(rules.denies(None, &bob(), MSG));
        assert!(rules.denies(None, &bob(), Traffic::StanzaOut));
    }
}
