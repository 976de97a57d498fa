//! XEP-0280 Message Carbons: `enable`/`disable` per connection, the `sent` carbon built for the
//! sender's other resources and the `received` carbon for the recipient's other resources.
//!
//! **Who gets `received` carbons** (decided by what the client negotiates): a connection that
//! enabled carbons *and* announced XEP-0115 entity capabilities in its available presence, as
//! every mainstream XMPP client does. The official ConnectyCube SDK enables carbons on every
//! connect but never sends caps, and misreads a `received` carbon as a message it sent; it
//! keeps what it had: `sent` carbons only, and originals sent to the bare JID on every resource.
//!
//! **When**: only a message addressed to a full JID and taken by that resource alone is copied
//! to the user's other resources. A message to the bare JID already reaches every connection
//! (RFC 6121 §8.5.2.1.1 lets the server deliver to all), so a `received` copy would be a
//! duplicate; so would one of a message to oneself (its `sent` carbon reaches the others).
//!
//! Must not copy messages marked `<private/>` or `<no-copy/>`, nor messages other than `chat`
//! and `normal` with a body (XEP-0280 §6).
//!
//! **Several nodes**: the node that routed the message serves its own connections and sends
//! the original, once, to each other node holding connections of the user
//! (`xmpp::cluster::carbons_elsewhere`); that node applies the same rules to its connections
//! ([`copy_here`]), because only it knows which of them enabled carbons or announced caps. The
//! resource that took the message is named, so it is never copied to itself.

use crate::hub::ConnInfo;
use crate::xmpp::cluster::carbons_elsewhere;
use crate::xmpp::dispatch::{
    BoxFuture, Extension, Flow, Hook, Kind, On, Phase, Registration, Reply, Request, Routed, Spec,
    To,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{MessageType, StanzaError, UserKey};
use crate::xmpp::stream::Element;
use crate::xmpp::Services;

/// XEP-0334 hints namespace (`<no-copy/>`).
const HINTS: &str = "urn:xmpp:hints";

pub const HANDLERS: &[Registration] = &[Registration {
    kind: Kind::IqSet,
    ns: ns::CARBONS,
    handler: Some(toggle),
    features: &[ns::CARBONS],
    for_users: false,
}];

/// The protocol rows this extension implements (the README table is rendered from them).
pub const SPECS: &[Spec] = &[
    Spec {
        name: "XEP-0280 Carbons",
        status: "complete",
        notes: "`sent` carbons to the sender's other connections that enabled carbons; `received` carbons of a message to another full JID of the user only to connections that enabled carbons *and* announced XEP-0115 caps (the ConnectyCube SDK sends no caps and misreads `received`); a bare-JID message reaches every resource and is not copied again; `chat` and `normal` with a body, never `<private/>` or `<no-copy/>`",
        ejabberd: "mod_carboncopy",
        prosody: "mod_carbons",
    },
];

pub const EXTENSION: Extension = Extension {
    handlers: HANDLERS,
    hooks: &[
        Hook {
            on: On::Message,
            phase: Phase::Delivered,
            run: copy_sent,
        },
        Hook {
            on: On::Message,
            phase: Phase::Delivered,
            run: copy_received,
        },
    ],
    specs: SPECS,
};

/// Delivered hook: the sender's other connections with carbons enabled get a `sent` copy of
/// an eligible 1:1 message (delivered live or kept offline), on every node.
fn copy_sent(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        if matches!(m.to, To::User(..)) && eligible(&m.stanza) {
            let conn = m.conn;
            copy_here(&m.services, m.user, false, &m.stanza, |c| c.id == conn);
            // The sender's resource is bound here, so no other node holds it.
            carbons_elsewhere(&m.services, m.user, false, None, &m.stanza);
        }
        Flow::Next
    })
}

/// Delivered hook: an eligible message that went to one resource of another user alone is
/// copied, as a `received` carbon, to that user's other connections that enabled carbons and
/// announced entity capabilities (see the module header for why both), on every node.
fn copy_received(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let To::User(target, Some(resource)) = &m.to else {
            return Flow::Next;
        };
        let took = m.to_resource;
        if (took.is_none() && !m.to_resource_elsewhere) || *target == m.user || !eligible(&m.stanza)
        {
            return Flow::Next;
        }
        // The addressed resource never gets a copy of its own message, whichever way it took it.
        copy_here(&m.services, *target, true, &m.stanza, |c| {
            Some(c.id) == took || c.resource == *resource
        });
        carbons_elsewhere(&m.services, *target, true, Some(resource), &m.stanza);
        Flow::Next
    })
}

/// Delivers a carbon of `msg` to `user`'s connections on this node that want it: for `sent`,
/// those that enabled carbons; for `received`, those that also announced caps; never one that
/// `skip` names (the sender's, or the one that took the message).
pub fn copy_here(
    services: &Services,
    user: UserKey,
    received: bool,
    msg: &Element,
    skip: impl Fn(&ConnInfo) -> bool,
) {
    let hub = &services.hub;
    let bare = user.bare_jid(services.domain()).to_string();
    for c in hub.connections(user) {
        let wanted = if received {
            wants_received(c.carbons, c.caps.is_some())
        } else {
            c.carbons
        };
        if wanted && !skip(&c) {
            let to = format!("{bare}/{}", c.resource);
            let copy = if received {
                received_copy(msg, &bare, &to)
            } else {
                sent_copy(msg, &bare, &to)
            };
            hub.deliver_to_conn(user, c.id, copy);
        }
    }
}

/// Whether a connection gets `received` carbons: it enabled carbons and announced XEP-0115
/// caps. The ConnectyCube SDK does the first and never the second.
pub fn wants_received(carbons_enabled: bool, announced_caps: bool) -> bool {
    carbons_enabled && announced_caps
}

fn toggle(req: Request<'_>) -> BoxFuture<'_, Reply> {
    Box::pin(async move {
        let on = match req.payload.name.as_str() {
            "enable" => true,
            "disable" => false,
            _ => return Err(StanzaError::bad_request()),
        };
        req.services.hub.set_carbons(req.user, req.conn, on);
        Ok(None)
    })
}

/// Whether `msg` (already stamped) is eligible for carbons (XEP-0280 §6): `chat`, or `normal`
/// (or no type) with a body; never with `<private/>` or `<no-copy/>`.
pub fn eligible(msg: &Element) -> bool {
    let kind = match MessageType::of(msg) {
        Ok(MessageType::Chat) => true,
        Ok(MessageType::Normal) => msg.child("body", ns::CLIENT).is_some(),
        _ => false,
    };
    kind && msg.child("private", ns::CARBONS).is_none() && msg.child("no-copy", HINTS).is_none()
}

/// `<message from=bare to=full><sent><forwarded><message…/></forwarded></sent></message>`.
pub fn sent_copy(msg: &Element, own_bare: &str, to_full: &str) -> Element {
    copy("sent", msg, own_bare, to_full)
}

/// `<message from=bare to=full><received><forwarded><message…/></forwarded></received></message>`.
pub fn received_copy(msg: &Element, own_bare: &str, to_full: &str) -> Element {
    copy("received", msg, own_bare, to_full)
}

fn copy(direction: &str, msg: &Element, own_bare: &str, to_full: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", own_bare)
        .with_attr("to", to_full)
        .with_attr("type", "chat")
        .with_child(
            Element::new(direction, ns::CARBONS)
                .with_child(Element::new("forwarded", ns::FORWARD).with_child(msg.clone())),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(attrs: &[(&str, &str)], children: Vec<Element>) -> Element {
        let mut m = Element::new("message", ns::CLIENT);
        for (k, v) in attrs {
            m = m.with_attr(k, *v);
        }
        for c in children {
            m = m.with_child(c);
        }
        m
    }

    fn body() -> Element {
        Element::new("body", ns::CLIENT)
    }

    #[test]
    fn chat_messages_are_eligible_with_or_without_a_body() {
        assert!(eligible(&msg(&[("type", "chat")], vec![body()])));
        assert!(eligible(&msg(&[("type", "chat")], vec![])));
    }

    #[test]
    fn normal_messages_are_eligible_only_with_a_body() {
        assert!(eligible(&msg(&[("type", "normal")], vec![body()])));
        assert!(eligible(&msg(&[], vec![body()])));
        assert!(!eligible(&msg(&[("type", "normal")], vec![])));
    }

    #[test]
    fn headline_groupchat_error_and_unknown_types_are_not_eligible() {
        for t in ["headline", "groupchat", "error", "bogus"] {
            assert!(!eligible(&msg(&[("type", t)], vec![body()])), "{t}");
        }
    }

    #[test]
    fn private_and_no_copy_messages_are_not_eligible() {
        let private = Element::new("private", ns::CARBONS);
        assert!(!eligible(&msg(&[("type", "chat")], vec![body(), private])));
        let no_copy = Element::new("no-copy", HINTS);
        assert!(!eligible(&msg(&[("type", "chat")], vec![body(), no_copy])));
    }

    #[test]
    fn received_carbons_need_carbons_enabled_and_announced_caps() {
        assert!(wants_received(true, true));
        assert!(!wants_received(true, false), "the ConnectyCube SDK");
        assert!(!wants_received(false, true));
    }
}
