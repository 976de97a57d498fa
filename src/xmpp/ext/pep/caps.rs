//! XEP-0115 Entity Capabilities, as far as PEP needs them: which nodes a connection wants
//! notifications of (`NODE+notify` features, XEP-0163 §4). A connection's available presence
//! carries `<c node ver hash='sha-1'/>`; the first time a `ver` is seen the server asks that
//! connection `disco#info` on `node#ver` (through `xmpp::server_iq`), recomputes the hash
//! (§5.1) and only then trusts and caches the answer: a client cannot poison the shared cache
//! with a feature list that does not hash to the `ver` it claims. The cache is shared by every
//! connection and bounded (`xmpp.caps_cache_max`, oldest forgotten first); each connection's
//! current `ver` is kept by the hub (it goes with the connection).
//!
//! When a connection's `ver` changes (coming online above all) it is sent the last item of
//! each node it wants from its contacts and itself (XEP-0163 §6.2), as is a new subscriber
//! when the owner approves it. Must not notify anyone: `super` decides who hears of a publish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::hub::ConnId;
use crate::xmpp::dispatch::{BoxFuture, Flow, Hook, On, Phase, Routed, To};
use crate::xmpp::ext::roster;
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, PresenceType, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const HOOKS: &[Hook] = &[Hook {
    on: On::Presence,
    phase: Phase::Delivered,
    run: on_presence,
}];

/// The longest `ver` accepted: a SHA-1 in base64 is 28 characters.
const MAX_VER: usize = 64;
/// The longest caps `node` (a URI naming the client software) accepted.
const MAX_NODE: usize = 1024;

/// What one verified capabilities hash says PEP needs to know: the nodes wanted (`+notify`).
#[derive(Debug, Default)]
pub struct Features {
    notify: HashSet<String>,
}

impl Features {
    /// The `+notify` nodes of a disco#info answer, at most `max_bytes` of names in all.
    fn of(query: &Element, max_bytes: usize) -> Features {
        let mut budget = max_bytes;
        let notify = query
            .elements()
            .filter(|f| f.is("feature", ns::DISCO_INFO))
            .filter_map(|f| f.attr("var")?.strip_suffix("+notify"))
            .filter(|n| !n.is_empty())
            .take_while(|n| match budget.checked_sub(n.len()) {
                Some(left) => {
                    budget = left;
                    true
                }
                None => false,
            })
            .map(str::to_owned)
            .collect();
        Features { notify }
    }

    pub fn wants(&self, node: &str) -> bool {
        self.notify.contains(node)
    }

    fn nodes(&self) -> Vec<String> {
        self.notify.iter().cloned().collect()
    }
}

/// A connection waiting for a `ver` being asked about: sent its last items once verified.
type Waiter = (UserKey, ConnId, String);

#[derive(Default)]
struct Inner {
    by_ver: HashMap<Arc<str>, Arc<Features>>,
    /// Insertion order, for forgetting the oldest past the bound.
    order: VecDeque<Arc<str>>,
    /// Hashes being asked about, and the connections that advertised them meanwhile.
    asking: HashMap<Arc<str>, Vec<Waiter>>,
}

/// Verified capabilities by `ver`, shared by every connection.
pub struct Cache {
    inner: Mutex<Inner>,
    max: usize,
}

impl Cache {
    pub fn new(max: usize) -> Self {
        Cache {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, ver: &str) -> Option<Arc<Features>> {
        self.lock().by_ver.get(ver).cloned()
    }

    /// Whether a connection with capabilities `ver` wants notifications of `node`.
    pub fn wants(&self, ver: Option<&Arc<str>>, node: &str) -> bool {
        ver.and_then(|v| self.get(v)).is_some_and(|f| f.wants(node))
    }

    fn insert(&self, ver: Arc<str>, f: Arc<Features>) {
        let mut i = self.lock();
        if i.by_ver.insert(ver.clone(), f).is_none() {
            i.order.push_back(ver);
        }
        while i.by_ver.len() > self.max {
            match i.order.pop_front() {
                Some(old) => {
                    i.by_ver.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Records `who` as waiting for `ver`; true when nobody was asking yet (the caller asks).
    /// At most `max` hashes are asked about at once: past it, false and nothing is recorded.
    fn start_asking(&self, ver: &Arc<str>, who: Waiter) -> bool {
        let mut i = self.lock();
        if let Some(w) = i.asking.get_mut(ver) {
            w.push(who);
            return false;
        }
        if i.asking.len() >= self.max {
            return false;
        }
        i.asking.insert(ver.clone(), vec![who]);
        true
    }

    fn done_asking(&self, ver: &str) -> Vec<Waiter> {
        self.lock().asking.remove(ver).unwrap_or_default()
    }
}

/// The XEP-0115 §5.1 verification string's SHA-1, in base64, of a disco#info answer; `None`
/// when the answer is one §5.4 says not to trust (duplicate identities or features, several
/// forms of one FORM_TYPE).
pub fn ver_of(query: &Element) -> Option<String> {
    let mut identities: Vec<[String; 4]> = query
        .elements()
        .filter(|e| e.is("identity", ns::DISCO_INFO))
        .map(|e| {
            let a = |k: &str| e.attr(k).unwrap_or_default().to_owned();
            [a("category"), a("type"), a("xml:lang"), a("name")]
        })
        .collect();
    let mut features: Vec<&str> = query
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .map(|e| e.attr("var").unwrap_or_default())
        .collect();
    identities.sort();
    features.sort_unstable();
    let before = (identities.len(), features.len());
    identities.dedup();
    features.dedup();
    if before != (identities.len(), features.len()) {
        return None;
    }
    let mut s = String::new();
    for [category, kind, lang, name] in &identities {
        s.push_str(&format!("{category}/{kind}/{lang}/{name}<"));
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    let mut forms: Vec<(String, String)> = Vec::new();
    for x in query.elements().filter(|e| e.is("x", ns::DATA_FORMS)) {
        let fields: Vec<&Element> = x.elements().filter(|f| f.name == "field").collect();
        let values = |f: &Element| -> Vec<String> {
            let mut v: Vec<String> = f
                .elements()
                .filter(|v| v.name == "value")
                .map(Element::text)
                .collect();
            v.sort();
            v
        };
        // A form without a FORM_TYPE is not part of the hash (§5.4 3.6).
        let Some(form_type) = fields
            .iter()
            .find(|f| f.attr("var") == Some("FORM_TYPE"))
            .and_then(|f| values(f).into_iter().next())
        else {
            continue;
        };
        let mut rest: Vec<&&Element> = fields
            .iter()
            .filter(|f| f.attr("var") != Some("FORM_TYPE"))
            .collect();
        rest.sort_by_key(|f| f.attr("var").unwrap_or_default());
        let mut text = format!("{form_type}<");
        for f in rest {
            text.push_str(f.attr("var").unwrap_or_default());
            text.push('<');
            for v in values(f) {
                text.push_str(&v);
                text.push('<');
            }
        }
        forms.push((form_type, text));
    }
    forms.sort();
    let types = forms.len();
    let mut seen: Vec<&String> = forms.iter().map(|(t, _)| t).collect();
    seen.dedup();
    if seen.len() != types {
        return None;
    }
    for (_, text) in &forms {
        s.push_str(text);
    }
    Some(base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes())))
}

fn on_presence(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        match (&m.to, m.presence_type()) {
            (To::Broadcast, Ok(PresenceType::Available)) => learn(m),
            (To::Broadcast, Ok(PresenceType::Unavailable)) => {
                // Coming back later is coming online again: its last items are sent again.
                m.services.hub.set_caps(m.user, m.conn, None);
            }
            (To::User(subscriber, _), Ok(PresenceType::Subscribed)) => {
                // The new subscriber now passes the `presence` access model: their connections
                // get this user's last items (XEP-0163 §6.2).
                let (s, owner, subscriber) = (m.services.clone(), m.user, *subscriber);
                tokio::spawn(async move {
                    for c in s.hub.connections(subscriber) {
                        let Some(f) = c.caps.as_deref().and_then(|v| s.caps.get(v)) else {
                            continue;
                        };
                        let full = format!("{}/{}", subscriber.bare_jid(s.domain()), c.resource);
                        send_last_items(&s, subscriber, c.id, &full, &f, Some(owner)).await;
                    }
                });
            }
            _ => {}
        }
        Flow::Next
    })
}

/// An available presence: records the connection's `ver`, asks about an unknown one, and sends
/// the last items when the connection's capabilities changed.
fn learn(m: &mut Routed) {
    let Some(c) = m.stanza.child("c", ns::CAPS) else {
        return; // a presence without caps keeps what the connection advertised before
    };
    let (Some(ver), Some(node)) = (c.attr("ver"), c.attr("node")) else {
        return;
    };
    // Only SHA-1 is verified (the hash every client uses); the legacy form has no `hash`.
    if c.attr("hash") != Some("sha-1") || ver.is_empty() || ver.len() > MAX_VER {
        return;
    }
    if node.is_empty() || node.len() > MAX_NODE {
        return;
    }
    let s = m.services.clone();
    let ver: Arc<str> = ver.into();
    let old = s.hub.set_caps(m.user, m.conn, Some(ver.clone()));
    if old.as_deref() == Some(&*ver) {
        return;
    }
    let (user, conn, full) = (m.user, m.conn, m.full.clone());
    if let Some(f) = s.caps.get(&ver) {
        tokio::spawn(async move { send_last_items(&s, user, conn, &full, &f, None).await });
        return;
    }
    if s.caps.start_asking(&ver, (user, conn, full.clone())) {
        let node = format!("{node}#{ver}");
        tokio::spawn(async move { ask(s, user, conn, full, node, ver).await });
    }
}

/// Asks one connection about its capabilities, verifies and caches the answer, then sends the
/// last items to every connection that advertised that `ver` meanwhile.
async fn ask(
    s: Arc<Services>,
    user: UserKey,
    conn: ConnId,
    full: String,
    node: String,
    ver: Arc<str>,
) {
    let id = format!("caps-{}", random_hex(6));
    let verified = match s.server_iqs.ask(conn, &id) {
        None => None,
        Some(rx) => {
            let iq = Element::new("iq", ns::CLIENT)
                .with_attr("type", "get")
                .with_attr("id", id.clone())
                .with_attr("from", user.bare_jid(s.domain()).to_string())
                .with_attr("to", full)
                .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", node));
            let limit = Duration::from_secs(s.config.xmpp.caps_query_timeout_secs.max(1));
            let answer = if s.hub.deliver_to_conn(user, conn, iq) {
                tokio::time::timeout(limit, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            s.server_iqs.forget(conn, &id);
            answer
                .filter(|a| a.attr("type") == Some("result"))
                .and_then(|a| a.child("query", ns::DISCO_INFO).cloned())
                .filter(|q| ver_of(q).as_deref() == Some(&*ver))
        }
    };
    let waiters = s.caps.done_asking(&ver);
    let Some(query) = verified else {
        tracing::debug!(%ver, "entity capabilities not verified");
        return;
    };
    let f = Arc::new(Features::of(&query, s.config.xmpp.caps_max_notify_bytes));
    s.caps.insert(ver.clone(), f.clone());
    for (user, conn, full) in waiters {
        // Only if the connection still advertises this hash.
        let current = s.hub.connections(user).into_iter().find(|c| c.id == conn);
        if current.is_some_and(|c| c.caps.as_deref() == Some(&*ver)) {
            send_last_items(&s, user, conn, &full, &f, None).await;
        }
    }
}

/// The last item of each node `f` wants, of the reader's contacts (those whose presence the
/// reader gets) and the reader themself, or of `only` one owner, to one connection.
async fn send_last_items(
    s: &Arc<Services>,
    reader: UserKey,
    conn: ConnId,
    full: &str,
    f: &Features,
    only: Option<UserKey>,
) {
    let nodes = f.nodes();
    if nodes.is_empty() {
        return;
    }
    let owners = match only {
        Some(o) => vec![o],
        None => {
            let mut o = roster::presence_sources(s, reader).await;
            o.push(reader);
            o
        }
    };
    let items = match crate::pubsub::last_items(&s.pool, s.domain(), reader, &owners, &nodes).await
    {
        Ok(i) => i,
        Err(_) => return,
    };
    for (owner, node, item) in items {
        let payload = super::payload_element(s, &item.payload);
        let event = super::items_event(&node, &item.id, payload);
        let from = owner.bare_jid(s.domain()).to_string();
        s.hub
            .deliver_to_conn(reader, conn, super::event_message(&from, full, event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(var: &str) -> Element {
        Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
    }

    /// XEP-0115 §5.2's simple example.
    #[test]
    fn the_simple_example_hashes_to_its_published_ver() {
        let q = Element::new("query", ns::DISCO_INFO)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "client")
                    .with_attr("type", "pc")
                    .with_attr("name", "Exodus 0.9.1"),
            )
            .with_child(feature("http://jabber.org/protocol/disco#info"))
            .with_child(feature("http://jabber.org/protocol/disco#items"))
            .with_child(feature("http://jabber.org/protocol/muc"))
            .with_child(feature("http://jabber.org/protocol/caps"));
        assert_eq!(ver_of(&q).as_deref(), Some("QgayPKawpkPSDYmwT/WM94uAlu0="));
    }

    fn field(var: &str, values: &[&str]) -> Element {
        let mut f = Element::new("field", ns::DATA_FORMS).with_attr("var", var);
        for v in values {
            f.push(Element::new("value", ns::DATA_FORMS).with_text(*v));
        }
        f
    }

    /// XEP-0115 §5.3's complex example (identities in two languages, an extended form).
    #[test]
    fn the_complex_example_hashes_to_its_published_ver() {
        let id = |lang: &str, name: &str| {
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("xml:lang", lang)
                .with_attr("category", "client")
                .with_attr("name", name)
                .with_attr("type", "pc")
        };
        let form = Element::new("x", ns::DATA_FORMS)
            .with_attr("type", "result")
            .with_child(field("FORM_TYPE", &["urn:xmpp:dataforms:softwareinfo"]))
            .with_child(field("ip_version", &["ipv4", "ipv6"]))
            .with_child(field("os", &["Mac"]))
            .with_child(field("os_version", &["10.5.1"]))
            .with_child(field("software", &["Psi"]))
            .with_child(field("software_version", &["0.11"]));
        let q = Element::new("query", ns::DISCO_INFO)
            .with_child(id("en", "Psi 0.11"))
            .with_child(id("el", "Ψ 0.11"))
            .with_child(feature("http://jabber.org/protocol/caps"))
            .with_child(feature("http://jabber.org/protocol/disco#info"))
            .with_child(feature("http://jabber.org/protocol/disco#items"))
            .with_child(feature("http://jabber.org/protocol/muc"))
            .with_child(form);
        assert_eq!(ver_of(&q).as_deref(), Some("q07IKJEyjvHSyhy//CH0CxmKi8w="));
    }

    #[test]
    fn duplicate_features_are_not_trusted() {
        let q = Element::new("query", ns::DISCO_INFO)
            .with_child(feature("urn:x"))
            .with_child(feature("urn:x"));
        assert_eq!(ver_of(&q), None);
    }

    #[test]
    fn notify_features_name_the_wanted_nodes() {
        let q = Element::new("query", ns::DISCO_INFO)
            .with_child(feature("urn:xmpp:avatar:metadata+notify"))
            .with_child(feature("urn:xmpp:avatar:metadata"))
            .with_child(feature("+notify"));
        let f = Features::of(&q, 1000);
        assert!(f.wants("urn:xmpp:avatar:metadata"));
        assert_eq!(f.nodes(), ["urn:xmpp:avatar:metadata"]);
    }

    #[test]
    fn notify_interests_past_the_byte_bound_are_ignored() {
        let q = Element::new("query", ns::DISCO_INFO)
            .with_child(feature("urn:a+notify"))
            .with_child(feature("urn:b+notify"))
            .with_child(feature("urn:c+notify"));
        let f = Features::of(&q, 10);
        assert!(f.wants("urn:a") && f.wants("urn:b"));
        assert!(!f.wants("urn:c"));
    }

    #[test]
    fn the_cache_forgets_the_oldest_past_its_bound() {
        let c = Cache::new(2);
        for v in ["a", "b", "c"] {
            c.insert(v.into(), Arc::new(Features::default()));
        }
        assert!(c.get("a").is_none());
        assert!(c.get("b").is_some() && c.get("c").is_some());
    }
}
