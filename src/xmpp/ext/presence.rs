//! RFC 6121 presence for one connection: initial presence (echoed to the user's own resources,
//! broadcast to contacts subscribed to the user, probes of the contacts the user is subscribed
//! to, then the messages and subscription requests kept offline), presence updates, directed
//! presence (remembered, at most `xmpp.directed_presences_max` per connection, undone at
//! unavailable), subscription presences between bare JIDs (the roster states are
//! `ext::roster`'s) and unavailable (own resources, contacts, directed recipients).
//!
//! Registered as Deliver and Delivered hooks; privacy screens directed presence first
//! (`ext::privacy`) and filters the roster broadcast and probes here through
//! `crate::privacy::presence_allowed`. Must not touch rooms (`ext::muc` handles room presence
//! and leaves the rooms on unavailable) nor read or write the roster's storage itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::db;
use crate::hub::ConnId;
use crate::xmpp::dispatch::{BoxFuture, Extension, Flow, Hook, On, Phase, Routed, Spec, To};
use crate::xmpp::ext::{offline, roster};
use crate::xmpp::ns;
use crate::xmpp::stanza::{PresenceType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "RFC 6121 IM: 1:1 messages, presence",
        status: "partial",
        notes: "initial presence echoed to own resources and broadcast to `from`/`both` contacts, probes of `to`/`both` contacts at login, directed presence, unavailable on close; subscription requests to an offline user wait for its next login",
        ejabberd: "yes",
        prosody: "yes",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: &[],
    hooks: &[
        Hook {
            on: On::Presence,
            phase: Phase::Deliver,
            run: deliver,
        },
        Hook {
            on: On::Presence,
            phase: Phase::Delivered,
            run: approved,
        },
    ],
    specs: SPECS,
};

/// One connection's presence state, kept by the session and lent to the hooks.
#[derive(Debug, Default)]
pub struct State {
    available: bool,
    /// Directed presences to undo at unavailable: `to` as sent → the user it resolved to.
    directed: HashMap<String, (UserKey, Option<String>)>,
    /// Roster contacts that get this user's presence (read at initial presence).
    subs: Vec<UserKey>,
}

/// Whether `presence` is a subscription presence (privacy does not screen those).
pub fn is_subscription(presence: &Element) -> bool {
    PresenceType::of(presence).is_ok_and(PresenceType::is_subscription)
}

fn deliver(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        match m.to.clone() {
            To::Broadcast => broadcast(m).await,
            To::User(target, resource) => match m.presence_type() {
                Ok(sub) if sub.is_subscription() => subscribe(m, sub, target).await,
                // Anything else, an unknown type included, is a directed presence.
                _ => directed(m, target, resource),
            },
            To::Room(_) => Flow::Next,
        }
    })
}

/// A presence without `to`: available (initial or an update) or unavailable; any other type,
/// an unknown one included, is ignored.
async fn broadcast(m: &mut Routed) -> Flow {
    match m.presence_type() {
        Ok(PresenceType::Available) => {
            available(m).await;
        }
        Ok(PresenceType::Unavailable) => {
            let el = Some(m.stanza.clone());
            go_unavailable(
                &m.services,
                m.user,
                m.conn,
                &m.full,
                &m.bare,
                &mut m.presence,
                el,
            );
        }
        _ => {}
    }
    Flow::Next
}

async fn available(m: &mut Routed) {
    let s = m.services.clone();
    let first = !m.presence.available;
    m.presence.available = true;
    s.hub.set_available(m.user, m.conn, true);
    m.stanza.set_attr("to", m.bare.clone());
    broadcast_own(&s, m.user, m.conn, &m.stanza);
    let probe = if first {
        initial_probe(&s, m.user).await
    } else {
        // A later presence re-reads the roster (subscriptions may have changed).
        db::xmpp::PresenceProbe {
            subscriptions: true,
            ..Default::default()
        }
    };
    let (subs, contacts) = if probe.subscriptions {
        roster::presence_both(&s, m.user).await
    } else {
        (Vec::new(), Vec::new())
    };
    m.presence.subs = crate::privacy::presence_allowed(&*s, m.user, subs, true).await;
    for contact in &m.presence.subs {
        let mut p = m.stanza.clone();
        p.set_attr("to", contact.bare_jid(s.domain()).to_string());
        s.hub.deliver_to_user(*contact, &p);
    }
    if first {
        // The user's other available resources, then every contact we are subscribed to
        // (RFC 6121 §4.2.2–4.2.3).
        let mut sources = vec![m.user];
        sources.extend(crate::privacy::presence_allowed(&*s, m.user, contacts, false).await);
        for src in sources {
            let bare = src.bare_jid(s.domain()).to_string();
            for c in s.hub.connections(src) {
                if c.available && c.id != m.conn {
                    let p = Element::new("presence", ns::CLIENT)
                        .with_attr("from", format!("{bare}/{}", c.resource))
                        .with_attr("to", m.full.clone());
                    m.out.push(p);
                }
            }
            // Its available sessions on other nodes of a cluster (none on a single node).
            for (resource, available) in s.hub.remote_resources(src) {
                if available {
                    m.out.push(
                        Element::new("presence", ns::CLIENT)
                            .with_attr("from", format!("{bare}/{resource}"))
                            .with_attr("to", m.full.clone()),
                    );
                }
            }
        }
        if probe.offline {
            m.out.extend(offline::take(&s, m.user).await);
        }
    }
}

/// The first initial presence of a stream: one statement tells what else to read (roster,
/// offline stanzas, privacy rules), so a login with none of them costs one more query, not
/// seven. It runs after bind, so a stanza stored offline before this point is seen here and
/// one stored after it is delivered live. A failed probe reads everything, as before.
async fn initial_probe(s: &Arc<Services>, user: UserKey) -> db::xmpp::PresenceProbe {
    let generation = s.privacy.generation();
    match db::xmpp::presence_probe(&s.pool, user.app, user.user).await {
        Ok(p) => {
            if p.privacy {
                // Routing to and from an online user (group fan-out above all) should find
                // the rules in memory.
                tokio::spawn(crate::privacy::PrivacyCache::warm(s.clone(), user));
            } else {
                s.privacy.note_empty(user, generation);
            }
            p
        }
        Err(e) => {
            tracing::warn!(error = %e, "probing presence state");
            db::xmpp::PresenceProbe {
                subscriptions: true,
                offline: true,
                privacy: true,
            }
        }
    }
}

/// A subscription presence: both rosters updated, then relayed between bare JIDs. (A request
/// to an offline contact waits in `ext::offline`; an approval is followed by our presence,
/// below.)
async fn subscribe(m: &mut Routed, sub: PresenceType, target: UserKey) -> Flow {
    if let Err(e) = roster::subscription(&m.services, m.user, sub, target).await {
        return Flow::Refuse(e);
    }
    // Subscription presences travel between bare JIDs.
    m.stanza.set_attr("from", m.bare.clone());
    m.stanza
        .set_attr("to", target.bare_jid(m.domain()).to_string());
    m.delivered = m.services.hub.deliver_to_user(target, &m.stanza);
    Flow::Next
}

/// After `subscribed`: the new subscriber gets our current presence at once.
fn approved(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        if let To::User(target, _) = m.to {
            if m.presence_type() == Ok(PresenceType::Subscribed) && m.presence.available {
                let p = Element::new("presence", ns::CLIENT)
                    .with_attr("from", m.full.clone())
                    .with_attr("to", target.bare_jid(m.domain()).to_string());
                m.services.hub.deliver_to_user(target, &p);
            }
        }
        Flow::Next
    })
}

/// A directed presence (privacy already screened it). Only available and unavailable change
/// what is undone at logout; any other type, an unknown one included, is delivered as is.
fn directed(m: &mut Routed, target: UserKey, resource: Option<String>) -> Flow {
    let to = m.stanza.attr("to").unwrap_or_default().to_owned();
    match m.presence_type() {
        Ok(PresenceType::Available) => {
            // Remembered to send unavailable at logout: a bounded set, so past the bound a
            // presence to one more JID is refused rather than silently never undone.
            let max = m.services.config.xmpp.directed_presences_max;
            let directed = &mut m.presence.directed;
            if !directed.contains_key(&to) && directed.len() >= max {
                return Flow::Refuse(StanzaError::not_allowed().with_text(format!(
                    "too many directed presences (at most {max} per connection)"
                )));
            }
            directed.insert(to, (target, resource.clone()));
        }
        Ok(PresenceType::Unavailable) => {
            m.presence.directed.remove(&to);
        }
        _ => {}
    }
    let hub = &m.services.hub;
    m.delivered = match resource {
        Some(r) => usize::from(hub.deliver_to_resource(target, &r, m.stanza.clone())),
        None => hub.deliver_to_user(target, &m.stanza),
    };
    Flow::Next
}

/// Presence to every available connection of the user itself (the initial-presence echo).
fn broadcast_own(s: &Services, user: UserKey, conn: ConnId, el: &Element) {
    for c in s.hub.connections(user) {
        if c.available || c.id == conn {
            s.hub.deliver_to_conn(user, c.id, el.clone());
        }
    }
}

/// The connection goes unavailable (an unavailable presence, or the stream's end): its own
/// resources, its contacts and everyone it sent directed presence to are told.
pub fn go_unavailable(
    s: &Services,
    user: UserKey,
    conn: ConnId,
    full: &str,
    bare: &str,
    state: &mut State,
    el: Option<Element>,
) {
    if !state.available {
        return;
    }
    state.available = false;
    s.hub.set_available(user, conn, false);
    let mut p =
        el.unwrap_or_else(|| Element::new("presence", ns::CLIENT).with_attr("type", "unavailable"));
    p.set_attr("from", full);
    p.set_attr("to", bare);
    broadcast_own(s, user, conn, &p);
    for contact in std::mem::take(&mut state.subs) {
        p.set_attr("to", contact.bare_jid(s.domain()).to_string());
        s.hub.deliver_to_user(contact, &p);
    }
    for (to, (u, r)) in std::mem::take(&mut state.directed) {
        p.set_attr("to", to);
        match r {
            Some(r) => {
                s.hub.deliver_to_resource(u, &r, p.clone());
            }
            None => {
                s.hub.deliver_to_user(u, &p);
            }
        }
    }
}
