//! XEP-0280 Message Carbons: `enable`/`disable` per connection, and the `sent` carbon built
//! for the sender's other resources. Only `sent` carbons exist here: originals already go to
//! every resource of the recipient, and the official SDK misreads `received` carbons. Must not
//! copy messages marked `<private/>` or `<no-copy/>`, nor non-chat messages.

use crate::xmpp::dispatch::{
    BoxFuture, Extension, Flow, Hook, Kind, On, Phase, Registration, Reply, Request, Routed, To,
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

pub const EXTENSION: Extension = Extension {
    handlers: HANDLERS,
    hooks: &[Hook {
        on: On::Message,
        phase: Phase::Delivered,
        run: copy_sent,
    }],
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

/// Whether `msg` (already stamped) is eligible for carbons.
pub fn eligible(msg: &Element) -> bool {
    MessageType::of(msg) == Ok(MessageType::Chat)
        && msg.child("private", ns::CARBONS).is_none()
        && msg.child("no-copy", HINTS).is_none()
}

/// `<message from=bare to=full><sent><forwarded><message…/></forwarded></sent></message>`.
pub fn sent_copy(msg: &Element, own_bare: &str, to_full: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", own_bare)
        .with_attr("to", to_full)
        .with_attr("type", "chat")
        .with_child(
            Element::new("sent", ns::CARBONS)
                .with_child(Element::new("forwarded", ns::FORWARD).with_child(msg.clone())),
        )
}
