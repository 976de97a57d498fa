//! XEP-0016 Privacy Lists (`jabber:iq:privacy`), as the official ConnectyCube SDK uses them, and
//! the XMPP side of privacy enforcement for every XEP (this one and XEP-0191 blocking).
//!
//! Lists: get names (`<active>`, `<default>`, `<list>`), get one list, create/replace a list,
//! delete one (an empty `<list name/>`), set or decline the default (per user) and the active
//! list (per connection). Each change is pushed to the user's connections. Following
//! ConnectyCube, the current default list can be neither edited nor deleted (`conflict`): a
//! client first declines the default (`<default/>`), edits, then sets the default again.
//!
//! Enforcement: the rules, the cache and the decision live in `crate::privacy` (shared with
//! REST fan-out); here [`screen`] turns a decision into what routing does with a stanza (deliver,
//! bounce, drop) and registers it as a screen hook for 1:1 messages, directed presence and
//! iqs to a user.
//!
//! Must not: reveal a block to the blocked user (inbound refusals are a plain
//! `service-unavailable`), or decide anything itself (`crate::privacy::decision` does). Not
//! done: subscription presences, and the XEP-0016 "default in use by another resource"
//! conflict.

use crate::db::privacy::{Action, Kinds, Matcher, PrivacyItem};
use crate::db::{self, DbError, DbPool};
use crate::hub::Hub;
/// Where `server.rs` builds it from.
pub use crate::privacy::PrivacyCache;
use crate::privacy::{decision, Decision, Env, Kind as Stanza};
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Flow, Hook, Kind, On, Phase, Registration, Reply, Request, Routed, Spec,
    To,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{
    random_hex, Condition, ErrorType, IqType, Jid, MessageType, StanzaError, UserKey,
};
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

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0016 Privacy Lists",
        status: "partial",
        notes: "as the ConnectyCube SDK uses them: names, get, create/replace, delete, default (per user) and active (per connection) lists, list pushes; `jid`/`group`/`subscription`/fall-through items; enforced for 1:1 messages, directed presence, roster presence and iqs to a user (answered on the user's behalf or routed); see \"Privacy\" below",
        ejabberd: "mod_privacy",
        prosody: "community module (mod_privacy_lists)",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: HANDLERS,
    hooks: &[
        Hook {
            on: On::Message,
            phase: Phase::Screen,
            run: screen_message,
        },
        Hook {
            on: On::Presence,
            phase: Phase::Screen,
            run: screen_presence,
        },
    ],
    specs: SPECS,
};

/// Screen hook: a refused 1:1 message is neither stored nor delivered; its sender gets the
/// bounce [`screen`] chose.
fn screen_message(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::User(target, _) = m.to else {
            return Flow::Next;
        };
        match screen(&m.services, m.user, target, Stanza::Message, &m.stanza).await {
            Ok(()) => Flow::Next,
            Err(bounce) => Flow::Drop(bounce),
        }
    })
}

/// Screen hook: refused directed presence is dropped silently. Subscription presences are not
/// screened (see the module header).
fn screen_presence(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::User(target, _) = m.to else {
            return Flow::Next;
        };
        if super::presence::is_subscription(&m.stanza) {
            return Flow::Next;
        }
        match screen(&m.services, m.user, target, Stanza::Presence, &m.stanza).await {
            Ok(()) => Flow::Next,
            Err(bounce) => Flow::Drop(bounce),
        }
    })
}

impl Env for Services {
    fn privacy_cache(&self) -> &PrivacyCache {
        &self.privacy
    }
    fn pool(&self) -> &DbPool {
        &self.pool
    }
    fn hub(&self) -> &Hub {
        &self.hub
    }
    fn chat_domain(&self) -> &str {
        self.domain()
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
    // A refused presence, message error or iq answer is dropped silently; any other message
    // (one of unknown type included) or iq request earns the bounce. An iq of unknown type
    // never gets here: routing answers it `bad-request` first.
    let silent = match kind {
        Stanza::Presence => true,
        Stanza::Message => MessageType::of(stanza) == Ok(MessageType::Error),
        Stanza::Iq => matches!(IqType::of(stanza), Ok(IqType::Result | IqType::Error)),
    };
    if silent {
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
            let err = StanzaError::new(ErrorType::Cancel, Condition::NotAcceptable);
            let mut reply = err.reply_to(stanza, domain);
            if let Some(Node::Element(e)) = reply.children.last_mut() {
                e.push(Element::new("blocked", ns::BLOCKING_ERRORS));
            }
            reply
        }
        _ => StanzaError::service_unavailable().reply_to(stanza, domain),
    }
}

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
        let rules = s.privacy.rules(&s.pool, req.user).await.map_err(internal)?;
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
        let rules = s.privacy.rules(&s.pool, user).await.map_err(internal)?;
        match op.name.as_str() {
            "active" => {
                let name = match list_name(op) {
                    Some(n) if rules.lists.contains_key(n) => Some(n.to_owned()),
                    Some(_) => return Err(StanzaError::item_not_found()),
                    None => None,
                };
                s.privacy.set_active(&s.hub, user, conn, name);
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
                crate::xmpp::cluster::forget_privacy(s, user);
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
                    if is_default || s.privacy.active_elsewhere(&s.hub, user, conn, name) {
                        return Err(StanzaError::conflict()
                            .with_text("the list is in use: decline it as default first"));
                    }
                    db::privacy::delete_list(&s.pool, user.app, user.user, name)
                        .await
                        .map_err(internal)?;
                    if s.privacy.active_of(user, conn).as_deref() == Some(name) {
                        s.privacy.set_active(&s.hub, user, conn, None);
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
                crate::xmpp::cluster::forget_privacy(s, user);
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
        assert_eq!(i.matcher, Matcher::Jid("muc.localhost/1002".into()));
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
}
