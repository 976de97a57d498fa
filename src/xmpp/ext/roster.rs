//! RFC 6121 roster and subscriptions, kept small: roster get, set (add/update/remove) with
//! pushes to every connection of the owner, and the four subscription presences updating both
//! parties' items (`none`/`to`/`from`/`both`, `ask`). Presence broadcast to subscribers and
//! probes of contacts are driven by the session through `presence_subscribers` /
//! `presence_sources`. Requests to offline users wait in offline storage.
//! A roster holds at most `xmpp.roster_max_items` items (a set or an outbound subscription that
//! would add one more: `<not-allowed/>`), each at most `xmpp.roster_item_max_bytes`
//! (`<not-acceptable/>`). Inbound subscription requests never create items for the recipient.
//! Not done: roster versioning, pre-approval. Must not touch users of another application.

use crate::db::{self, xmpp::RosterItem};
use crate::xmpp::dispatch::{BoxFuture, Extension, Kind, Registration, Reply, Request, Spec};
use crate::xmpp::ns;
use crate::xmpp::stanza::{random_hex, Jid, PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

pub const EXTENSION: Extension = Extension::documented(HANDLERS, SPECS);

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "RFC 6121 roster",
        status: "partial",
        notes: "get, set, remove, pushes to every connection, subscription states (`none`/`to`/`from`/`both`, `ask`); no roster versioning or pre-approval",
        ejabberd: "mod_roster",
        prosody: "mod_roster",
    },
];

pub const HANDLERS: &[Registration] = &[
    Registration {
        kind: Kind::IqGet,
        ns: ns::ROSTER,
        handler: Some(get),
        features: &[],
        for_users: false,
    },
    Registration {
        kind: Kind::IqSet,
        ns: ns::ROSTER,
        handler: Some(set),
        features: &[],
        for_users: false,
    },
];

fn internal(e: db::DbError) -> StanzaError {
    tracing::warn!(error = %e, "roster storage");
    StanzaError::internal_server_error()
}

fn roster_full(services: &Services) -> StanzaError {
    StanzaError::not_allowed().with_text(format!(
        "the roster is full (at most {} items)",
        services.config.xmpp.roster_max_items
    ))
}

/// Stores `item` for `user` within the roster bound.
async fn put(services: &Services, user: UserKey, item: &RosterItem) -> Result<(), StanzaError> {
    let max = services.config.xmpp.roster_max_items;
    if db::xmpp::roster_put(&services.pool, user.app, user.user, item, max)
        .await
        .map_err(internal)?
    {
        Ok(())
    } else {
        Err(roster_full(services))
    }
}

/// The bytes an item takes: its contact JID, name and groups.
fn item_bytes(item: &RosterItem) -> usize {
    item.groups.iter().fold(
        item.contact.len() + item.name.as_ref().map_or(0, String::len),
        |n, g| n.saturating_add(g.len()),
    )
}

fn item_element(item: &RosterItem) -> Element {
    let mut e = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.contact.clone())
        .with_attr("subscription", item.subscription.clone());
    if let Some(n) = &item.name {
        e.set_attr("name", n.clone());
    }
    if item.ask {
        e.set_attr("ask", "subscribe");
    }
    for g in &item.groups {
        e.push(Element::new("group", ns::ROSTER).with_text(g.clone()));
    }
    e
}

/// A roster push (`iq type=set`) of one item to every connection of `user`.
fn push(services: &Services, user: UserKey, item: Element) {
    crate::xmpp::cluster::forget_privacy(services, user); // `group`/`subscription` privacy items read the roster
    let bare = user.bare_jid(services.domain()).to_string();
    for c in services.hub.connections(user) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", random_hex(6)))
            .with_attr("to", format!("{bare}/{}", c.resource))
            .with_child(Element::new("query", ns::ROSTER).with_child(item.clone()));
        services.hub.deliver_to_conn(user, c.id, iq);
    }
    // Its connections on other nodes of a cluster, each copy addressed to its full JID there.
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", format!("push-{}", random_hex(6)))
        .with_child(Element::new("query", ns::ROSTER).with_child(item));
    services.hub.deliver_addressed_elsewhere(user, &bare, &iq);
}

fn get(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let items = db::xmpp::roster_list(&req.services.pool, req.user.app, req.user.user)
            .await
            .map_err(internal)?;
        let mut q = Element::new("query", ns::ROSTER);
        for i in &items {
            q.push(item_element(i));
        }
        Ok(Some(q))
    })
}

fn set(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let mut items = req.payload.elements().filter(|e| e.is("item", ns::ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(StanzaError::bad_request());
        };
        let contact = item
            .attr("jid")
            .and_then(Jid::parse)
            .filter(|j| j.resource.is_none())
            .ok_or_else(StanzaError::bad_request)?;
        let s = req.services;
        // A user JID of this server must be one of the caller's application (tenant rule);
        // removing such an item is always allowed.
        let removing = item.attr("subscription") == Some("remove");
        if !removing
            && contact
                .user(s.domain())
                .is_some_and(|u| !req.user.same_app(&u))
        {
            return Err(StanzaError::item_not_found().with_text("no such user"));
        }
        let contact = contact.to_string();
        let (app, user) = (req.user.app, req.user.user);
        if removing {
            if !db::xmpp::roster_remove(&s.pool, app, user, &contact)
                .await
                .map_err(internal)?
            {
                return Err(StanzaError::item_not_found());
            }
            let removed = Element::new("item", ns::ROSTER)
                .with_attr("jid", contact)
                .with_attr("subscription", "remove");
            push(s, req.user, removed);
            return Ok(None);
        }
        let existing = db::xmpp::roster_get(&s.pool, app, user, &contact)
            .await
            .map_err(internal)?;
        let mut next = existing.unwrap_or(RosterItem {
            contact,
            name: None,
            subscription: "none".into(),
            ask: false,
            groups: Vec::new(),
        });
        next.name = item.attr("name").map(str::to_owned);
        next.groups = item
            .elements()
            .filter(|g| g.is("group", ns::ROSTER))
            .map(|g| g.text())
            .collect();
        let max_bytes = s.config.xmpp.roster_item_max_bytes;
        if item_bytes(&next) > max_bytes {
            return Err(StanzaError::not_acceptable().with_text(format!(
                "the item is too large (at most {max_bytes} bytes of JID, name and groups)"
            )));
        }
        put(s, req.user, &next).await?;
        push(s, req.user, item_element(&next));
        Ok(None)
    })
}

fn add(sub: &str, side: &str) -> String {
    match (sub, side) {
        ("none", s) => s.to_owned(),
        ("to", "from") | ("from", "to") | ("both", _) => "both".into(),
        (s, _) => s.to_owned(),
    }
}

fn remove(sub: &str, side: &str) -> String {
    match (sub, side) {
        ("both", "to") => "from".into(),
        ("both", "from") => "to".into(),
        (s, side) if s == side => "none".into(),
        (s, _) => s.to_owned(),
    }
}

/// Applies `f` to `owner`'s item for `contact` (creating it when `create`), stores and pushes it.
async fn update(
    services: &Services,
    owner: UserKey,
    contact: UserKey,
    create: bool,
    f: impl FnOnce(&mut RosterItem),
) -> Result<(), StanzaError> {
    let contact_jid = contact.bare_jid(services.domain()).to_string();
    let existing = db::xmpp::roster_get(&services.pool, owner.app, owner.user, &contact_jid)
        .await
        .map_err(internal)?;
    let mut item = match existing {
        Some(i) => i,
        None if create => RosterItem {
            contact: contact_jid,
            name: None,
            subscription: "none".into(),
            ask: false,
            groups: Vec::new(),
        },
        None => return Ok(()),
    };
    let before = item.clone();
    f(&mut item);
    if item != before || create {
        put(services, owner, &item).await?;
        push(services, owner, item_element(&item));
    }
    Ok(())
}

/// `user` sent a subscription presence of `kind` to `contact`: update both rosters. Only the
/// sender's roster may gain an item (refused past its bound); the contact's is only updated.
pub async fn subscription(
    services: &Services,
    user: UserKey,
    kind: PresenceType,
    contact: UserKey,
) -> Result<(), StanzaError> {
    match kind {
        PresenceType::Subscribe => update(services, user, contact, true, |i| i.ask = true).await,
        PresenceType::Subscribed => {
            update(services, user, contact, true, |i| {
                i.subscription = add(&i.subscription, "from")
            })
            .await?;
            update(services, contact, user, false, |i| {
                i.subscription = add(&i.subscription, "to");
                i.ask = false;
            })
            .await
        }
        PresenceType::Unsubscribe => {
            update(services, user, contact, false, |i| {
                i.subscription = remove(&i.subscription, "to");
                i.ask = false;
            })
            .await?;
            update(services, contact, user, false, |i| {
                i.subscription = remove(&i.subscription, "from")
            })
            .await
        }
        PresenceType::Unsubscribed => {
            update(services, user, contact, false, |i| {
                i.subscription = remove(&i.subscription, "from")
            })
            .await?;
            update(services, contact, user, false, |i| {
                i.subscription = remove(&i.subscription, "to");
                i.ask = false;
            })
            .await
        }
        _ => Ok(()),
    }
}

async fn contacts_where(services: &Services, user: UserKey, sides: &[&str]) -> Vec<UserKey> {
    match db::xmpp::roster_list(&services.pool, user.app, user.user).await {
        Ok(items) => pick(services, user, &items, sides),
        Err(e) => {
            tracing::warn!(error = %e, "reading roster");
            Vec::new()
        }
    }
}

fn pick(
    services: &Services,
    user: UserKey,
    items: &[db::xmpp::RosterItem],
    sides: &[&str],
) -> Vec<UserKey> {
    items
        .iter()
        .filter(|i| sides.contains(&i.subscription.as_str()))
        .filter_map(|i| Jid::parse(&i.contact)?.peer_of(services.domain(), &user))
        .collect()
}

/// Both directions from one roster read (initial presence needs both):
/// `(presence_subscribers, presence_sources)`.
pub async fn presence_both(services: &Services, user: UserKey) -> (Vec<UserKey>, Vec<UserKey>) {
    match db::xmpp::roster_list(&services.pool, user.app, user.user).await {
        Ok(items) => (
            pick(services, user, &items, &["from", "both"]),
            pick(services, user, &items, &["to", "both"]),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading roster");
            (Vec::new(), Vec::new())
        }
    }
}

/// Contacts that receive `user`'s presence (subscription `from` or `both`).
pub async fn presence_subscribers(services: &Services, user: UserKey) -> Vec<UserKey> {
    contacts_where(services, user, &["from", "both"]).await
}

/// Contacts whose presence `user` receives (subscription `to` or `both`).
pub async fn presence_sources(services: &Services, user: UserKey) -> Vec<UserKey> {
    contacts_where(services, user, &["to", "both"]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_states_combine_per_rfc_6121() {
        assert_eq!(add("none", "to"), "to");
        assert_eq!(add("from", "to"), "both");
        assert_eq!(add("both", "from"), "both");
        assert_eq!(remove("both", "to"), "from");
        assert_eq!(remove("to", "to"), "none");
        assert_eq!(remove("from", "to"), "from");
    }
}
