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

use crate::xmpp::dispatch::{
    BoxFuture, Extension, Flow, Hook, Kind, On, Phase, Registration, Reply, Request, Routed, Spec,
    To,
};
use crate::xmpp::ns;
use crate::xmpp::stanza::{MessageType, StanzaError};
use crate::xmpp::stream::Element;

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
/// an eligible 1:1 message (delivered live or kept offline).
fn copy_sent(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        if matches!(m.to, To::User(..)) && eligible(&m.stanza) {
            let hub = &m.services.hub;
            for c in hub.connections(m.user) {
                if c.id != m.conn && c.carbons {
                    let to = format!("{}/{}", m.bare, c.resource);
                    let copy = sent_copy(&m.stanza, &m.bare, &to);
                    hub.deliver_to_conn(m.user, c.id, copy);
                }
            }
        }
        Flow::Next
    })
}

/// Delivered hook: an eligible message that went to one resource of another user alone is
/// copied, as a `received` carbon, to that user's other connections that enabled carbons and
/// announced entity capabilities (see the module header for why both).
fn copy_received(m: &mut Routed) -> BoxFuture<'_, Flow> {
    Box::pin(async move {
        let (To::User(target, Some(_)), Some(took)) = (&m.to, m.to_resource) else {
            return Flow::Next;
        };
        if *target == m.user || !eligible(&m.stanza) {
            return Flow::Next;
        }
        let hub = &m.services.hub;
        let bare = target.bare_jid(m.services.domain()).to_string();
        for c in hub.connections(*target) {
            if c.id != took && wants_received(c.carbons, c.caps.is_some()) {
                let to = format!("{bare}/{}", c.resource);
                hub.deliver_to_conn(*target, c.id, received_copy(&m.stanza, &bare, &to));
            }
        }
        Flow::Next
    })
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
